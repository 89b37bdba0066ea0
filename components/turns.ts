/**
 * Lets the registrations started so far go on before the program defines
 * more: the SDK's work for a resource (serializing its inputs, resolving its
 * dependencies, answering its Outputs) then happens while the program runs,
 * not all at once after it, and what a finished registration held is
 * garbage by the time the next resources allocate. Defining a 250-host full
 * mesh in one synchronous pass held every resource's pending work at once:
 * about 1.4 GB at its peak, against about 0.7 GB when each step of the plan
 * yields and about 0.5 GB when the mesh step also yields between hosts (see
 * BENCHMARKS.md). What is defined, and in which order, stays the same.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
