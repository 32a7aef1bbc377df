/**
 * Leases as a handler sees them. The allocator answers an AcquireLease with LeaseAcquired
 * in the inbox (matched by the lease id we chose), and tells a holder that lost one with
 * LeaseLost. A held lease is renewed at a third of its TTL (sooner if its expiry says so)
 * and released when done. A LeaseLost naming a token we do not hold (the answer to a
 * renewal with a wrong token) is not about our lease: it stays held and renewed.
 */
import { randomUUID } from "node:crypto";
import { LeaseLostError, LeaseTimeout } from "./errors";
import type { Logger } from "./log";
import type { LeaseAcquired, LeaseLost } from "./protocol";
import type { ReliableSender } from "./sender";

const REMEMBERED_GRANTS = 1024;

export function renewDelayMs(ttlS: number, expiresAt: Date | undefined, now: number = Date.now()): number {
  let delay = (ttlS * 1000) / 3;
  if (expiresAt !== undefined) delay = Math.min(delay, (expiresAt.getTime() - now) / 2);
  return Math.max(50, delay);
}

export class Lease {
  fencingToken: number;
  expiresAt: Date | undefined;
  lostReason: string | undefined;
  private readonly controller = new AbortController();
  /** Aborted when the lease is lost: pass it to whatever uses the resource. */
  readonly signal: AbortSignal = this.controller.signal;

  constructor(
    readonly resource: string,
    readonly leaseId: string,
    readonly ttlS: number,
    fencingToken: number,
    expiresAt: Date | undefined,
    private readonly book: LeaseBook,
  ) {
    this.fencingToken = fencingToken;
    this.expiresAt = expiresAt;
  }

  get lost(): boolean {
    return this.signal.aborted;
  }

  /** Throw LeaseLostError if the lease was lost: call before using the resource. */
  check(): void {
    if (this.lost) throw new LeaseLostError(this.resource, this.leaseId, this.lostReason ?? "lost");
  }

  /** Stop renewing and hand the lease back. */
  release(): void {
    this.book.release(this);
  }

  markLost(reason: string): void {
    this.lostReason = reason;
    this.controller.abort(new LeaseLostError(this.resource, this.leaseId, reason));
  }
}

interface Waiter {
  resolve: (grant: LeaseAcquired) => void;
  reject: (err: Error) => void;
}

export class LeaseBook {
  private readonly waiting = new Map<string, Waiter>();
  private readonly held = new Map<string, Lease>();
  private readonly renewers = new Map<string, NodeJS.Timeout>();
  private readonly grants = new Map<string, LeaseAcquired>(); // taken for us by the allocator
  private readonly abandoned = new Set<string>(); // asked for, stopped waiting: release if granted

  constructor(private readonly agentId: string, private readonly sender: ReliableSender, private readonly log: Logger) {}

  onAcquired(notice: LeaseAcquired): void {
    const waiter = this.waiting.get(notice.lease_id);
    if (waiter !== undefined) {
      this.waiting.delete(notice.lease_id);
      waiter.resolve(notice);
      return;
    }
    const lease = this.held.get(notice.lease_id);
    if (lease !== undefined) { // a renewal took: the token and expiry may move on
      lease.fencingToken = notice.fencing_token;
      lease.expiresAt = new Date(notice.expires_at);
      return;
    }
    if (this.abandoned.delete(notice.lease_id)) {
      this.sendRelease(notice.resource, notice.lease_id, notice.fencing_token);
      return;
    }
    this.grants.set(notice.lease_id, notice);
    while (this.grants.size > REMEMBERED_GRANTS) this.grants.delete(this.grants.keys().next().value as string);
  }

  onLost(notice: LeaseLost): void {
    const lease = this.held.get(notice.lease_id);
    if (lease !== undefined && lease.fencingToken !== notice.fencing_token) {
      this.log("warning", "sdk.lease_lost_ignored", {
        resource: notice.resource, lease_id: notice.lease_id, token: notice.fencing_token, held_token: lease.fencingToken,
      });
      return;
    }
    this.log("warning", "sdk.lease_lost", { resource: notice.resource, lease_id: notice.lease_id, reason: notice.reason });
    const waiter = this.waiting.get(notice.lease_id);
    if (waiter !== undefined) {
      this.waiting.delete(notice.lease_id);
      waiter.reject(new LeaseLostError(notice.resource, notice.lease_id, notice.reason));
    }
    if (lease !== undefined) {
      this.held.delete(notice.lease_id);
      lease.markLost(notice.reason);
    }
    this.stopRenewing(notice.lease_id);
  }

  /** Ask for a lease and wait for the grant (LeaseTimeout after `timeoutS`, if given). */
  async acquire(resource: string, ttlS: number, timeoutS?: number): Promise<Lease> {
    const leaseId = randomUUID();
    const granted = new Promise<LeaseAcquired>((resolve, reject) => this.waiting.set(leaseId, { resolve, reject }));
    granted.catch(() => undefined);
    await this.sender.deliver(this.sender.wrap("AcquireLease", { resource, agent_id: this.agentId, lease_id: leaseId, ttl_s: ttlS }));
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      if (timeoutS !== undefined) {
        timer = setTimeout(() => reject(new LeaseTimeout(`no lease on '${resource}' within ${timeoutS}s`)), timeoutS * 1000);
      }
    });
    let grant: LeaseAcquired;
    try {
      grant = await Promise.race([granted, expired]);
    } catch (err) {
      if (this.waiting.delete(leaseId) && err instanceof LeaseTimeout) this.abandoned.add(leaseId);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    const lease = new Lease(resource, leaseId, ttlS, grant.fencing_token, new Date(grant.expires_at), this);
    this.hold(lease);
    return lease;
  }

  /** Leases the allocator took for an assignment: keep renewing those whose grant we heard. */
  adopt(leaseIds: readonly string[], ttlS: number): Lease[] {
    const adopted: Lease[] = [];
    for (const id of leaseIds) {
      const grant = this.grants.get(id);
      if (grant === undefined || this.held.has(id)) continue;
      this.grants.delete(id);
      const lease = new Lease(grant.resource, id, ttlS, grant.fencing_token, new Date(grant.expires_at), this);
      this.hold(lease);
      adopted.push(lease);
    }
    return adopted;
  }

  private hold(lease: Lease): void {
    this.held.set(lease.leaseId, lease);
    this.scheduleRenewal(lease);
  }

  private scheduleRenewal(lease: Lease): void {
    const timer = setTimeout(() => {
      if (lease.lost || !this.held.has(lease.leaseId)) return;
      const renew = { resource: lease.resource, agent_id: this.agentId, lease_id: lease.leaseId, fencing_token: lease.fencingToken };
      this.sender.deliverSoon(this.sender.wrap("RenewLease", renew));
      // the allocator extends by the TTL; a LeaseAcquired answer, if any, corrects this
      lease.expiresAt = new Date(Date.now() + lease.ttlS * 1000);
      this.scheduleRenewal(lease);
    }, renewDelayMs(lease.ttlS, lease.expiresAt));
    timer.unref();
    this.renewers.set(lease.leaseId, timer);
  }

  /** Stop renewing without releasing (the allocator frees a task's leases itself). */
  drop(lease: Lease): void {
    this.held.delete(lease.leaseId);
    this.stopRenewing(lease.leaseId);
  }

  release(lease: Lease): void {
    const wasHeld = this.held.has(lease.leaseId);
    this.drop(lease);
    if (wasHeld && !lease.lost) this.sendRelease(lease.resource, lease.leaseId, lease.fencingToken);
  }

  close(): void {
    for (const id of [...this.renewers.keys()]) this.stopRenewing(id);
  }

  private sendRelease(resource: string, leaseId: string, token: number): void {
    const release = { resource, agent_id: this.agentId, lease_id: leaseId, fencing_token: token };
    this.sender.deliverSoon(this.sender.wrap("ReleaseLease", release));
  }

  private stopRenewing(leaseId: string): void {
    const timer = this.renewers.get(leaseId);
    if (timer !== undefined) clearTimeout(timer);
    this.renewers.delete(leaseId);
  }
}
