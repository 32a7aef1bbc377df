/**
 * Logs as JSON lines on stderr, one object per event, in the field names the Python
 * workers use (`event`, `level`, `timestamp`), so one tool reads both. RALLY_LOG_LEVEL
 * picks the threshold (DEBUG, INFO, WARNING, ERROR; default INFO).
 */
export type Level = "debug" | "info" | "warning" | "error";
export type Logger = (level: Level, event: string, fields?: Record<string, unknown>) => void;

const ORDER: Record<Level, number> = { debug: 10, info: 20, warning: 30, error: 40 };

function threshold(): number {
  const raw = (process.env.RALLY_LOG_LEVEL ?? "INFO").toLowerCase();
  const level = (raw === "warn" ? "warning" : raw) as Level;
  return ORDER[level] ?? ORDER.info;
}

export function jsonLogger(base: Record<string, unknown> = {}): Logger {
  const min = threshold();
  return (level, event, fields = {}) => {
    if (ORDER[level] < min) return;
    const line = { event, level, timestamp: new Date().toISOString(), ...base, ...fields };
    process.stderr.write(JSON.stringify(line, (_k, v: unknown) => (v instanceof Error ? `${v.name}: ${v.message}` : v)) + "\n");
  };
}

export function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
