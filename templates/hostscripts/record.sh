# shellcheck shell=bash
# shellcheck disable=SC2154 # swarm_owned_*: filled by the step's script (prelude.sh), when it has one
# swarm_record FILE: writes the record of what this step installed (what swarm-drift compares the
# host with): each file with its hash, mode and owner as they are now, and the other lines the
# step added with swarm_own. Sorted, tab-separated, 0600 in a 0700 directory: a hash of a key file
# reveals nothing of the key, but nobody else needs to read it.
swarm_record() {
  local record=$1 path line tmp
  install -d -m 0700 "${record%/*}"
  # A dot file until complete: swarm-drift skips those, so an interrupted run leaves no false step.
  tmp=$(mktemp "${record%/*}/.${record##*/}.XXXXXX")
  {
    for path in ${swarm_owned_files[@]+"${swarm_owned_files[@]}"}; do
      # A file written and then removed by the same run (a fallback replaced) is not owned.
      [ -f "$path" ] || continue
      printf 'file\t%s\t%s\t%s\n' "$path" "$(sha256sum <"$path" | cut -d' ' -f1)" "$(stat -c $'%a\t%U:%G' "$path")"
    done
    for line in ${swarm_owned_lines[@]+"${swarm_owned_lines[@]}"}; do
      printf '%s\n' "$line"
    done
  } | LC_ALL=C sort -u >"$tmp"
  mv -f "$tmp" "$record"
}
