/**
 * SSH host keys for fleets that are only ever rendered offline (tests,
 * benchmarks, examples): valid Ed25519 public keys derived from a name, so
 * that a fixture validates and renders the same every time. No host has the
 * matching private key.
 */
import { createHash } from "node:crypto";
import { ed25519OpenSsh } from "../components/sshKeypair";

/** `ssh-ed25519 AAAA...` for a host called `name`. */
export function fixtureHostKey(name: string): string {
  const seed = createHash("sha256").update(`swarm fixture host key\0${name}`).digest();
  const [type, blob] = ed25519OpenSsh(seed, "").publicKey.split(" ");
  return `${type} ${blob}`;
}
