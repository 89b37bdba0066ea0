/**
 * Records the resource graph as the program builds it: a transformation
 * passed to a component is inherited by all its descendants and sees each
 * one's type, name, inputs and options (parent, dependsOn) before it is
 * registered. The mock runtime alone does not see parents or dependencies.
 */
import * as pulumi from "@pulumi/pulumi";

export interface Registration {
  readonly type: string;
  readonly name: string;
  readonly resource: pulumi.Resource;
  readonly parent?: pulumi.Resource;
  readonly dependsOn: readonly pulumi.Resource[];
  readonly props: Record<string, unknown>;
  /** Options as given; for custom resources they include `additionalSecretOutputs`, `ignoreChanges`. */
  readonly opts: pulumi.CustomResourceOptions;
}

export class GraphRecorder {
  readonly registrations: Registration[] = [];

  /** Pass as `transformations: [recorder.transformation]` in a component's options. */
  readonly transformation: pulumi.ResourceTransformation = (args) => {
    const deps = args.opts.dependsOn;
    this.registrations.push({
      type: args.type,
      name: args.name,
      resource: args.resource,
      parent: args.opts.parent,
      dependsOn: (Array.isArray(deps) ? deps : deps === undefined ? [] : [deps]) as pulumi.Resource[],
      props: args.props,
      opts: args.opts as pulumi.CustomResourceOptions,
    });
    return undefined;
  };

  named(name: string): Registration {
    const found = this.registrations.find((r) => r.name === name);
    if (found === undefined) {
      throw new Error(
        `no registration named ${name}; have: ${this.registrations.map((r) => r.name).join(", ")}`,
      );
    }
    return found;
  }

  /** Names of the resources registered with `parent` as their parent. */
  childrenOf(parent: pulumi.Resource): string[] {
    return this.registrations.filter((r) => r.parent === parent).map((r) => r.name);
  }
}
