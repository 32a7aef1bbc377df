export { Agent, type AgentOptions } from "./agent";
export { Client, Submission, TaskHandle, type ClientOptions, type SubmitOptions } from "./client";
export { type Handler, type Task } from "./execution";
export { Lease } from "./lease";
export {
  LeaseLostError, LeaseTimeout, NonRetryableError, TaskCancelledError, TaskError, TaskFailedError,
  TaskOutcomeError, TaskRefusedError, TimeoutError,
} from "./errors";
export { BUNDLE_CONTENT_TYPE, BundleTooLarge, decodeBundle, encodeBundle, type BundleMember } from "./bundle";
export { type Envelope, type Json, Names, routingKey, wrap } from "./protocol";
export { jsonLogger, type Logger, type Level } from "./log";
export { settingsFromEnv, type Settings } from "./settings";
