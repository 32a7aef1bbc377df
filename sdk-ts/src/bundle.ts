/**
 * Bundles (content type application/vnd.rally.bundle): per member, one JSON line of its
 * own properties (`n` = body length in bytes, required; `id`, `type`, `cid`, `h`), then
 * the body, then a newline. contracts/bundle.py is the reference codec.
 */
import { MalformedMessage } from "./protocol";

export const BUNDLE_CONTENT_TYPE = "application/vnd.rally.bundle";
export const BUNDLE_MAX_BYTES = 16 * 1024 * 1024;
export const BUNDLE_MAX_MEMBERS = 1024;

export interface BundleMember {
  body: Buffer;
  messageId?: string;
  type?: string;
  correlationId?: string;
  headers: Record<string, unknown>;
}

export function encodeBundle(members: BundleMember[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const meta: Record<string, unknown> = { id: m.messageId ?? null, n: m.body.length };
    if (m.type !== undefined) meta.type = m.type;
    if (m.correlationId !== undefined) meta.cid = m.correlationId;
    if (Object.keys(m.headers).length > 0) meta.h = m.headers;
    parts.push(Buffer.from(JSON.stringify(meta)), Buffer.from("\n"), m.body, Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

/** The members, or MalformedMessage saying where the bundle breaks (then it dies whole). */
/** Over a bundle limit (members or bytes): it too goes whole to the dead letters. */
export class BundleTooLarge extends MalformedMessage {
  override name = "BundleTooLarge";
}

export function decodeBundle(raw: Buffer, limits: { maxMembers?: number; maxBytes?: number } = {}): BundleMember[] {
  const maxMembers = limits.maxMembers ?? BUNDLE_MAX_MEMBERS;
  if (raw.length > (limits.maxBytes ?? BUNDLE_MAX_BYTES)) throw new BundleTooLarge(`bundle is ${raw.length} bytes, over the limit`);
  const members: BundleMember[] = [];
  let pos = 0;
  while (pos < raw.length) {
    if (members.length >= maxMembers) throw new BundleTooLarge(`bundle has more than ${maxMembers} members`);
    const index = members.length;
    const endMeta = raw.indexOf(0x0a, pos);
    if (endMeta < 0) throw new MalformedMessage(`bundle member ${index}: no line of properties`);
    let meta: unknown;
    try {
      meta = JSON.parse(raw.subarray(pos, endMeta).toString("utf8"));
    } catch {
      throw new MalformedMessage(`bundle member ${index}: properties are not JSON`);
    }
    if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
      throw new MalformedMessage(`bundle member ${index}: properties are not a JSON object`);
    }
    const m = meta as Record<string, unknown>;
    const n = m.n;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw new MalformedMessage(`bundle member ${index}: no body length 'n'`);
    const h = m.h ?? {};
    if (typeof h !== "object" || h === null || Array.isArray(h)) throw new MalformedMessage(`bundle member ${index}: headers 'h' are not an object`);
    const start = endMeta + 1;
    const stop = start + n;
    if (stop >= raw.length + 1 || raw[stop] !== 0x0a) {
      throw new MalformedMessage(`bundle member ${index}: body of ${n} bytes does not end the line`);
    }
    const member: BundleMember = { body: raw.subarray(start, stop), headers: h as Record<string, unknown> };
    if (m.id != null) member.messageId = String(m.id);
    if (m.type != null) member.type = String(m.type);
    if (m.cid != null) member.correlationId = String(m.cid);
    members.push(member);
    pos = stop + 1;
  }
  if (members.length === 0) throw new MalformedMessage("bundle has no members");
  return members;
}
