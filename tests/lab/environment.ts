/**
 * The lab suite's test environment: Node's, plus one thing the suite needs and jest does not give a
 * test, which check failed last (a failure or a timeout). The suite reads it as
 * `globalThis.labFailedCheck` (see `failedCheck` and the `beforeEach` that reads it in fleet.e2e.test.ts).
 */
import type { Circus } from "@jest/types";
import NodeEnvironment from "jest-environment-node";

export default class LabEnvironment extends NodeEnvironment {
  handleTestEvent(event: Circus.Event): void {
    if (event.name === "test_done" && event.test.errors.length > 0) {
      this.global.labFailedCheck = event.test.name;
    }
  }
}
