/**
 * Which registry shard hears an agent: its slot, carried in the routing key of its registry
 * commands (`registry.<Type>.<slot>`). The slot is FNV-1a (32 bit) of the agent id's UTF-8
 * bytes, modulo SLOTS; contracts/shards.py is the reference and contracts/vectors/slots.json
 * pins it. The slot count is fixed by the protocol, so an agent never needs to know how
 * many registry shards run.
 */

/** Slots of the protocol: never changes, whatever the number of registry shards. */
export const SLOTS = 64;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over bytes, as an unsigned 32-bit number. */
export function fnv1a32(data: Uint8Array): number {
  let h = FNV_OFFSET;
  for (const byte of data) {
    // Math.imul multiplies modulo 2^32 (a plain * loses bits past 2^53); >>> 0 makes it unsigned
    h = Math.imul(h ^ byte, FNV_PRIME) >>> 0;
  }
  return h;
}

const utf8 = new TextEncoder();

/** The agent's slot, 0..SLOTS-1: the same in every process, release and language. */
export function slotOf(agentId: string): number {
  return fnv1a32(utf8.encode(agentId)) % SLOTS;
}

/** `registry.<Type>.<slot>`: where an agent's registry command is published. */
export function registryRoutingKey(type: string, agentId: string): string {
  return `registry.${type}.${slotOf(agentId)}`;
}
