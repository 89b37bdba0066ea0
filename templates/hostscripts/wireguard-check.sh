# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # swarm_host, wg_previous, wg_expected, wg_plan_*: set by the apply script before these functions run; wg_live_*: read by it after
# Functions of the WireGuard apply script that read the plan's peers, the files and the running
# interface, and undo an apply. The names below are the TypeScript's constants (templates/wireguard.ts).
wg_interface=wg0
wg_dir=/etc/wireguard
wg_conf_name=wg0.conf
wg_public_conf_name=wg0.conf.public
wg_conf_path=/etc/wireguard/wg0.conf
wg_unit=wg-quick@wg0
# swarm_wg_file_endpoints FILE: each peer's public key and the Endpoint FILE gives it, one a line.
swarm_wg_file_endpoints() {
  local line key=
  [ -f "$1" ] || return 0
  while IFS= read -r line; do
    case $line in
    "PublicKey = "*) key=${line#PublicKey = } ;;
    "Endpoint = "*) printf '%s %s\n' "$key" "${line#Endpoint = }" ;;
    esac
  done <"$1"
}
# AllowedIPs as wg show dump writes them, sorted as the plan lists them.
swarm_wg_sorted() {
  tr ',' '\n' <<<"$1" | sort | paste -sd, -
}
# swarm_wg_read_live: the running interface's public key and, per peer, AllowedIPs, endpoint and
# bytes received; false when the interface is not up. The dump's first line holds the private key:
# it stays in this function's variables.
declare -A wg_live_allowed=() wg_live_endpoint=() wg_live_rx=()
wg_live_key=
swarm_wg_read_live() {
  local first=1 key psk endpoint allowed rx rest
  wg_live_key=
  wg_live_allowed=() wg_live_endpoint=() wg_live_rx=()
  while IFS=$'\t' read -r key psk endpoint allowed _ rx rest; do
    if [ "$first" = 1 ]; then
      first=0
      wg_live_key=$psk
      continue
    fi
    wg_live_allowed[$key]=$(swarm_wg_sorted "$allowed")
    wg_live_endpoint[$key]=$endpoint
    wg_live_rx[$key]=$rx
  done < <(wg show ${wg_interface} dump 2>/dev/null)
  [ "$first" = 0 ]
}
# swarm_wg_live_as_planned: true when the running interface has the planned public key and exactly
# the planned peers with their AllowedIPs (a peer added with wg set, or AllowedIPs changed by hand,
# make it false: the apply script then applies the files again). Endpoints roam: not compared.
swarm_wg_live_as_planned() {
  local peer
  swarm_wg_read_live || return 1
  [ "$wg_live_key" = "$wg_expected" ] || return 1
  [ "${#wg_live_allowed[@]}" = "${#wg_plan_order[@]}" ] || return 1
  for peer in "${wg_plan_order[@]}"; do
    [ "${wg_live_allowed[$peer]-}" = "${wg_plan_allowed[$peer]}" ] || return 1
  done
}
# Puts back the files this run replaced (or removes the ones it created).
swarm_wg_restore_files() {
  local name
  for name in ${wg_conf_name} ${wg_public_conf_name}; do
    if [ -f "$wg_previous/$name" ]; then
      mv -f "$wg_previous/$name" "${wg_dir}/$name"
    else
      rm -f "${wg_dir}/$name"
    fi
  done
}
# swarm_wg_rollback HOW: restores the previous files and the interface as it ran before HOW
# (sync, restart or start) applied the new ones.
swarm_wg_rollback() {
  local previous=0 stripped
  [ -f "$wg_previous/${wg_conf_name}" ] && previous=1
  swarm_wg_restore_files
  case $1 in
  sync)
    if [ "$previous" = 1 ] && stripped=$(wg-quick strip ${wg_interface}) &&
      wg syncconf ${wg_interface} <(printf '%s\n' "$stripped"); then
      echo "swarm: $swarm_host: rolled ${wg_interface} back to the previous ${wg_conf_path} with wg syncconf" >&2
    else
      echo "swarm: $swarm_host: could not roll ${wg_interface} back: there is no previous ${wg_conf_path}, or wg syncconf refused it" >&2
    fi
    ;;
  restart)
    if [ "$previous" = 1 ] && systemctl restart ${wg_unit}; then
      echo "swarm: $swarm_host: restarted ${wg_unit} with the previous ${wg_conf_path}" >&2
    else
      systemctl stop ${wg_unit} || true
      echo "swarm: $swarm_host: stopped ${wg_unit}: there is no previous ${wg_conf_path} it starts with" >&2
    fi
    ;;
  start)
    # The interface was down before this run: it goes down again.
    systemctl stop ${wg_unit} || true
    [ "$previous" = 1 ] || systemctl disable --quiet ${wg_unit} || true
    echo "swarm: $swarm_host: stopped ${wg_unit} again: it was not running before this run" >&2
    ;;
  esac
}
