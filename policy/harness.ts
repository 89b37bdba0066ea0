/**
 * Runs the pack's policies outside the Pulumi engine, over resources
 * described the way the engine hands them to a policy pack: type, name,
 * URN, properties, parent, resource options and property dependencies.
 * `@pulumi/policy` ships no test helpers, so the tests (hand-built
 * resources, and resources recorded from the real components under Pulumi's
 * mock runtime) go through this instead.
 */
import {
  Policies,
  PolicyResource,
  PolicyResourceOptions,
  ResourceValidationArgs,
  StackValidationArgs,
} from "@pulumi/policy";

/** One resource as the engine describes it. URNs name the parent and the dependencies. */
export interface ResourceRecord {
  readonly type: string;
  readonly name: string;
  readonly urn: string;
  /** Inputs for resource policies; the tests use the same values as the outputs seen by stack policies. */
  readonly props: Record<string, unknown>;
  readonly parent?: string;
  readonly additionalSecretOutputs?: readonly string[];
  /** Per input property, the URNs of the resources its value was computed from. */
  readonly propertyDependencies?: Readonly<Record<string, readonly string[]>>;
}

export interface Violation {
  readonly policy: string;
  readonly message: string;
  /** The resource the violation is about: the validated resource, or the one a stack policy named. */
  readonly urn?: string;
}

/** The URN Pulumi gives a resource: the parent's type chain, then the resource's own type and name. */
export function urnOf(stack: string, type: string, name: string, parentUrn?: string): string {
  const parentTypes = parentUrn === undefined ? "" : `${parentUrn.split("::")[2]}$`;
  return `urn:pulumi:${stack}::swarm::${parentTypes}${type}::${name}`;
}

function optionsOf(record: ResourceRecord): PolicyResourceOptions {
  return {
    protect: false,
    ignoreChanges: [],
    aliases: [],
    customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    additionalSecretOutputs: [...(record.additionalSecretOutputs ?? [])],
    ...(record.parent !== undefined ? { parent: record.parent } : {}),
  };
}

class NotApplicable extends Error {}

const notApplicable = (reason?: string): never => {
  throw new NotApplicable(reason);
};

const typeOf = (resourceClass: unknown): string | undefined =>
  (resourceClass as { __pulumiType?: string }).__pulumiType;

/**
 * Every violation the policies report for the records: each resource policy
 * on each resource, then each stack policy on all of them.
 */
export async function evaluatePolicies(
  policies: Policies,
  records: readonly ResourceRecord[],
): Promise<Violation[]> {
  const violations: Violation[] = [];
  const stackTags = new Map<string, string>();
  for (const policy of policies) {
    if (!("validateResource" in policy) || policy.validateResource === undefined) {
      continue;
    }
    const validations = Array.isArray(policy.validateResource)
      ? policy.validateResource
      : [policy.validateResource];
    for (const record of records) {
      const args: ResourceValidationArgs = {
        type: record.type,
        props: record.props,
        urn: record.urn,
        name: record.name,
        opts: optionsOf(record),
        stackTags,
        isType: (cls) => typeOf(cls) === record.type,
        asType: ((cls: unknown) =>
          typeOf(cls) === record.type ? record.props : undefined) as ResourceValidationArgs["asType"],
        getConfig: <T extends object>() => ({}) as T,
        notApplicable,
      };
      for (const validate of validations) {
        try {
          await validate(args, (message) =>
            violations.push({ policy: policy.name, message, urn: record.urn }),
          );
        } catch (err) {
          if (!(err instanceof NotApplicable)) {
            throw err;
          }
        }
      }
    }
  }

  const byUrn = new Map<string, PolicyResource>();
  const resources: PolicyResource[] = records.map((record) => {
    const resource: PolicyResource = {
      type: record.type,
      props: record.props,
      urn: record.urn,
      name: record.name,
      opts: optionsOf(record),
      dependencies: [],
      propertyDependencies: {},
      isType: (cls) => typeOf(cls) === record.type,
      asType: ((cls: unknown) =>
        typeOf(cls) === record.type ? record.props : undefined) as PolicyResource["asType"],
    };
    byUrn.set(record.urn, resource);
    return resource;
  });
  records.forEach((record, i) => {
    const resource = resources[i];
    if (record.parent !== undefined) {
      resource.parent = byUrn.get(record.parent);
    }
    const all = new Set<string>();
    for (const [property, urns] of Object.entries(record.propertyDependencies ?? {})) {
      resource.propertyDependencies[property] = urns.flatMap((urn) => {
        all.add(urn);
        const found = byUrn.get(urn);
        return found ? [found] : [];
      });
    }
    resource.dependencies = [...all].flatMap((urn) => {
      const found = byUrn.get(urn);
      return found ? [found] : [];
    });
  });
  const stackArgs: StackValidationArgs = {
    resources,
    stackTags,
    getConfig: <T extends object>() => ({}) as T,
    notApplicable,
  };
  for (const policy of policies) {
    if (!("validateStack" in policy)) {
      continue;
    }
    try {
      await policy.validateStack(stackArgs, (message, urn) =>
        violations.push({ policy: policy.name, message, urn }),
      );
    } catch (err) {
      if (!(err instanceof NotApplicable)) {
        throw err;
      }
    }
  }
  return violations;
}
