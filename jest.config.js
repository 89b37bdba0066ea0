/** Unit tests only; the lab suite has its own config (jest.lab.config.js). */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>"],
  testMatch: ["**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "/tests/lab/", "/lab/"],
  transform: { "^.+\\.ts$": "ts-jest" },
  testTimeout: 30000,
};
