# shellcheck shell=bash
# zfs_converge DATASET HINT PROPERTY=VALUE...: sets those that differ in one zfs set (OpenZFS checks every pair
# before it changes any) and reports each; HINT says how to fix a refusal. Each property is recorded as owned
# (swarm_own, prelude.sh): swarm-drift reports a value changed behind swarm's back.
zfs_converge() {
  local dataset=$1 hint=$2 out i
  shift 2
  local pairs=("$@") names=() have=() pending=() was=()
  for i in "${!pairs[@]}"; do
    names+=("${pairs[i]%%=*}")
  done
  # One value per line in the order asked: matched by position, so a short name such as compress works too.
  out=$(IFS=,; zfs get -H -o value "${names[*]}" "$dataset") || fail "cannot read ${names[*]} of $dataset: $hint"
  mapfile -t have <<<"$out"
  [ "${#have[@]}" -eq "${#pairs[@]}" ] ||
    fail "zfs get printed ${#have[@]} values for the ${#pairs[@]} properties ${names[*]} of $dataset: $hint"
  for i in "${!pairs[@]}"; do
    swarm_own zfs "$dataset" "${names[i]}" "${pairs[i]#*=}"
    if [ "${have[i]}" != "${pairs[i]#*=}" ]; then
      pending+=("${pairs[i]}")
      was+=("${have[i]}")
    fi
  done
  [ "${#pending[@]}" -gt 0 ] || return 0
  zfs set "${pending[@]}" "$dataset" || fail "zfs set ${pending[*]} on $dataset failed: $hint"
  for i in "${!pending[@]}"; do
    echo "swarm: set ${pending[i]} on $dataset (was ${was[i]})"
  done
}
