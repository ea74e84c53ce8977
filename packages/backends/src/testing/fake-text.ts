/**
 * Deterministic text helpers of the fake upstreams: word counts stand in for token counts so
 * tests can assert exact usage, and embeddings are a fixed function of the input.
 */

/** Words separated by whitespace. */
export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed ? trimmed.split(/\s+/).length : 0;
}

/** Splits a reply into stream pieces: one word per piece, each with its leading whitespace. */
export function splitReply(reply: string): string[] {
  return reply.match(/\s*\S+/g) ?? (reply ? [reply] : []);
}

/** The text of a message `content`: a string, or the `text` of its text parts. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) =>
      part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string'
        ? (part as { text: string }).text
        : '',
    )
    .join(' ');
}

/** Words in every message's content. */
export function countMessageWords(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let total = 0;
  for (const message of messages) {
    if (message && typeof message === 'object') {
      total += countWords(contentText((message as { content?: unknown }).content));
    }
  }
  return total;
}

/** Words in a prompt or embedding input: a string, strings, or token arrays (one per token). */
export function countInputWords(input: unknown): number {
  if (typeof input === 'string') return countWords(input);
  if (!Array.isArray(input)) return 0;
  let total = 0;
  for (const item of input) {
    if (typeof item === 'string') total += countWords(item);
    else if (typeof item === 'number') total += 1;
    else if (Array.isArray(item)) total += item.length;
  }
  return total;
}

/** The inputs of an embedding request as a list (token arrays become their JSON text). */
export function inputList(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input)) return [];
  if (input.every((item) => typeof item === 'number')) return [JSON.stringify(input)];
  return input.map((item) => (typeof item === 'string' ? item : JSON.stringify(item)));
}

/** A unit-length vector that depends only on the text and the dimension count. */
export function fakeEmbedding(text: string, dimensions: number): number[] {
  let seed = 2166136261;
  for (let index = 0; index < text.length; index++) {
    seed = Math.imul(seed ^ text.charCodeAt(index), 16777619) >>> 0;
  }
  const vector: number[] = [];
  for (let index = 0; index < dimensions; index++) {
    seed = Math.imul(seed ^ (seed >>> 15), 2246822507) >>> 0;
    seed = Math.imul(seed ^ (seed >>> 13), 3266489909) >>> 0;
    vector.push((seed / 0xffffffff) * 2 - 1);
  }
  const length = Math.hypot(...vector) || 1;
  return vector.map((value) => value / length);
}
