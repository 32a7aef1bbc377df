export { Agent, type AgentOptions } from "./agent";
export { Client, Submission, TaskHandle, type ClientOptions, type SubmitOptions } from "./client";
export { type Handler, type Task } from "./execution";
export { Lease } from "./lease";
export {
  LeaseLostError, LeaseTimeout, NonRetryableError, TaskCancelledError, TaskError, TaskFailedError,
  TaskOutcomeError, TaskRefusedError, TimeoutError,
} from "./errors";
export { BUNDLE_CONTENT_TYPE, BundleTooLarge, decodeBundle, encodeBundle, type BundleMember } from "./bundle";
export { commandRoutingKey, type Envelope, type Json, Names, routingKey, type TaskState, type TaskView, type TimelineEntry, wrap } from "./protocol";
export { registryRoutingKey, SLOTS, slotOf } from "./slots";
export { jsonLogger, type Logger, type Level } from "./log";
export { BrokerConfigError, parseNodes } from "./nodes";
export { settingsFromEnv, type Settings } from "./settings";
export { BrokerUnavailable } from "./transport";
