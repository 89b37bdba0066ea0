/**
 * The swarm CrossGuard policy pack, run by `pulumi preview --policy-pack policy`
 * and `pulumi up --policy-pack policy`. Loading this file serves the pack to
 * the Pulumi engine; the policies themselves live in `policies.ts`.
 */
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies";

new PolicyPack("swarm", {
  description:
    "Guards for a swarm fleet: SSH never open to the internet, fleet labels, private keys only in secrets, WireGuard ports only on mesh hosts.",
  // A violation blocks the preview and the update: none of these is a matter of taste.
  enforcementLevel: "mandatory",
  policies,
});
