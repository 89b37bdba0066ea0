/**
 * `npm run render`: its command line, and a render of the example stack into
 * a folder, checked for what a reviewer reads there.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { USAGE, main } from "../scripts/render";

const ROOT = path.join(__dirname, "..");

let outdir: string;

beforeEach(() => {
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-render-"));
});

afterEach(() => {
  fs.rmSync(outdir, { recursive: true, force: true });
});

async function run(argv: string[], dir = ROOT) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, dir);
  return { code, out, err };
}

describe("npm run render", () => {
  test.each([
    [[], "name the stack"],
    [["prod"], "name the outdir"],
    [["prod", "out", "more"], "unexpected argument more"],
    [["--all", "prod", "out"], "Unknown option '--all'"],
  ])("answers %j with what is wrong and the usage line, exit 2", async (argv, message) => {
    expect(await run(argv)).toEqual({ code: 2, out: [], err: [message, USAGE] });
  });

  test("names a missing stack file, exit 1, writing nothing", async () => {
    const target = path.join(outdir, "render");
    expect(await run(["nowhere", target])).toEqual({
      code: 1,
      out: [],
      err: ["Pulumi.nowhere.yaml does not exist: create it, or name an existing stack (Pulumi.<stack>.yaml)"],
    });
    expect(fs.existsSync(target)).toBe(false);
  });

  test("refuses a folder that holds something other than an earlier render, exit 1", async () => {
    fs.writeFileSync(path.join(outdir, "notes.txt"), "mine");
    const { code, out, err } = await run(["prod", outdir]);
    expect({ code, out }).toEqual({ code: 1, out: [] });
    expect(err).toEqual([
      expect.stringMatching(/^render failed: .* is not empty and holds no earlier render/),
    ]);
    expect(fs.readdirSync(outdir)).toEqual(["notes.txt"]);
  });

  test("writes each host's files, commands and manifest, and the topology, exit 0", async () => {
    const target = path.join(outdir, "render");
    const { code, out, err } = await run(["prod", target]);
    expect({ code, err }).toEqual({ code: 0, err: [] });
    expect(out).toEqual([
      expect.stringMatching(/^rendered Pulumi\.prod\.yaml into .*: anchor \d+ files, .*; topology\.mmd$/),
    ]);
    expect(fs.readFileSync(path.join(target, "topology.mmd"), "utf8")).toMatch(/anchor/);
    const manifest = fs.readFileSync(path.join(target, "anchor", "MANIFEST"), "utf8");
    expect(manifest).toMatch(/^command /m);
    expect(manifest).toMatch(/^file \d+ \S+ \//m);
  }, 60_000);
});
