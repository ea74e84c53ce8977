/**
 * @module @tollgate/gateway
 *
 * The Tollgate gateway: an OpenAI-compatible HTTP server (Hono on Node) that puts tenants, API
 * keys, limits, usage metering, an admin API, request ids, JSON access logs, body limits, CORS
 * and graceful shutdown in front of the LLM servers you run yourself. Configuration comes from one zod schema fed by a YAML file,
 * `TOLLGATE_*` environment variables and command-line flags. The `tollgate` command wraps it.
 *
 * @example
 * ```ts
 * import { loadConfig, startGateway } from '@tollgate/gateway';
 *
 * const gateway = await startGateway(loadConfig());
 * console.log(`OpenAI base URL: ${gateway.url}/v1`);
 * ```
 */
export {
  type AccessControl,
  type Admission,
  type AdmissionRequest,
  createStaticKeyAccess,
  createTenancyAccess,
  FIRST_KEY_HELP,
  isLoopbackHost,
  type Principal,
  type RequestOrigin,
  type ResolvedAccess,
  resolveAccess,
  type SettleOutcome,
  type TenancyAccess,
} from './access.js';
export { type AdminOptions, createAdminApp } from './admin.js';
export { type CreateAppOptions, createApp, type GatewayEnv } from './app.js';
export {
  BACKEND_TYPES,
  type BackendConfig,
  type Config,
  ConfigError,
  ConfigFileSchema,
  DEFAULT_CONFIG_FILE,
  isConfigError,
  LOG_LEVELS,
  type LoadConfigOptions,
  type LogLevel,
  loadConfig,
  type ModelLimitConfig,
} from './config.js';
export { type CreateLoggerOptions, createLogger, type Logger } from './logger.js';
export { buildRouter, type Gateway, type StartGatewayOptions, startGateway } from './server.js';
export { type OpenedTenancy, type OpenTenancyOptions, openTenancy } from './tenancy-setup.js';
