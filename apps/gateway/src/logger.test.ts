import { describe, expect, it } from 'vitest';
import { captureLogger } from './test-helpers.js';

describe('createLogger', () => {
  it('behavior: secrets at the top level of a line print as [redacted]', () => {
    const log = captureLogger();
    log.logger.info(
      { authorization: 'Bearer sk-top-secret', 'x-api-key': 'sk-other', apiKey: 'sk-third' },
      'line',
    );
    expect(log.raw()).not.toContain('sk-top-secret');
    expect(log.raw()).not.toContain('sk-other');
    expect(log.raw()).not.toContain('sk-third');
    expect(log.lines[0]).toMatchObject({ authorization: '[redacted]', 'x-api-key': '[redacted]' });
  });

  it('behavior: secrets under headers print as [redacted], other headers stay', () => {
    const log = captureLogger();
    log.logger
      .child({ requestId: 'r1' })
      .info({ headers: { authorization: 'Bearer sk-in-headers', accept: 'text/plain' } }, 'line');
    expect(log.raw()).not.toContain('sk-in-headers');
    expect(log.lines[0]).toMatchObject({
      requestId: 'r1',
      headers: { authorization: '[redacted]', accept: 'text/plain' },
    });
  });

  it('behavior: lines are JSON with level, ISO time and msg', () => {
    const log = captureLogger();
    log.logger.info('hello');
    expect(log.lines[0]).toMatchObject({ level: 'info', msg: 'hello', service: 'tollgate' });
    expect(String(log.lines[0]?.time)).toMatch(/^\d{4}-\d\d-\d\dT/);
  });
});
