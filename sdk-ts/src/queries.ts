/**
 * Questions to the task manager and their answers, matched by the question's message id
 * (sdk/queries.py on the Python side). A QueryTask is answered by a TaskView in the
 * asker's inbox whose envelope `causation_id` is the query's id. The waiter exists
 * before the query leaves, so even an answer that beats the publish confirm finds it.
 */
import type { TaskView } from "./protocol";

interface Waiter {
  resolve: (view: TaskView) => void;
}

export class QueryBook {
  private readonly waiting = new Map<string, Waiter>();

  /** A promise of the answer to the query with this id; call before publishing it. */
  expect(queryId: string): Promise<TaskView> {
    return new Promise<TaskView>((resolve) => this.waiting.set(queryId, { resolve }));
  }

  forget(queryId: string): void {
    this.waiting.delete(queryId);
  }

  /** Hand the answer to its waiter; false when nobody asked (or stopped waiting). */
  answer(queryId: string | null | undefined, view: TaskView): boolean {
    if (queryId == null) return false;
    const waiter = this.waiting.get(queryId);
    if (waiter === undefined) return false;
    this.waiting.delete(queryId);
    waiter.resolve(view);
    return true;
  }

  get size(): number {
    return this.waiting.size;
  }
}
