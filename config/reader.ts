/**
 * Duration and value wording shared with the templates; the config reader
 * itself is the schema walk in schemaKit.ts.
 */
export { describe, formatDuration, parseDuration } from "./schemaKit";
