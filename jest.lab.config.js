/** The lab end-to-end suite: real hosts, so one file, in band, with long timeouts. */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "<rootDir>/tests/lab/environment.ts",
  roots: ["<rootDir>/tests/lab"],
  testMatch: ["**/*.e2e.test.ts"],
  transform: { "^.+\\.ts$": "ts-jest" },
  testTimeout: 300000,
  verbose: true,
};
