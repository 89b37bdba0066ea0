/** The heredoc that carries a file's content never ends early, whatever lines the content holds. */
import { spawnSync } from "node:child_process";
import * as fc from "fast-check";
import { extractFiles, writeFile } from "../templates/shell";

const line = fc.oneof(
  fc.constantFrom("SWARM_EOF", "SWARM_EOF_1", "SWARM_EOF_2", " SWARM_EOF", "SWARM_EOF ", ""),
  fc.string({ unit: fc.constantFrom("S", "W", "A", "R", "M", "_", "E", "O", "F", "1", "x", "'", "$") }),
);
const content = fc.array(line, { maxLength: 8 }).map((lines) => lines.join("\n"));

describe("writeFile", () => {
  it("chooses a delimiter that is no line of the content, so the content comes back whole", () => {
    fc.assert(
      fc.property(content, (text) => {
        const files = extractFiles(writeFile({ path: "/etc/x", mode: "0644", content: text }));
        expect(files.map((f) => f.content)).toEqual([text.endsWith("\n") ? text : `${text}\n`]);
      }),
    );
  });

  it.each([
    ["the first delimiter as a line", "a\nSWARM_EOF\nb\n"],
    ["both first delimiters, first and last", "SWARM_EOF\nx\nSWARM_EOF_1"],
    ["the delimiter as the whole content", "SWARM_EOF"],
  ])("bash reads back %s exactly", (_what, text) => {
    const script = writeFile({ path: "/etc/x", mode: "0644", content: text }).replace(
      /^swarm_write '\/etc\/x' 0644 root:root /,
      "cat ",
    );
    const result = spawnSync("bash", ["-c", script], { encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(text.endsWith("\n") ? text : `${text}\n`);
  });
});
