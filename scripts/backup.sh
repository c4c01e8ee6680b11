#!/usr/bin/env bash
# Host mode: the nightly backup from a server, run by cron or a systemd timer. It runs the same
# pipeline as the Lambda function (`pg-s3-backup backup`), so the backups, manifests, retention and
# alerts are identical.
#
#   scripts/backup.sh [--env-file FILE] [--reason TEXT]
#   crontab:  0 2 * * *  /opt/pg-s3-backup/scripts/backup.sh --env-file /etc/pg-s3-backup.env
#
# Settings come from the environment, or from an env file (KEY=VALUE lines, read as data, never
# executed) that must be private: mode 0600 or 0400, so credentials are never on a command line
# nor readable by other users. A lock (flock) makes sure two runs never overlap. Every line is
# timestamped on stdout and also sent to syslog (when there is one). The exit status is the
# backup's: non-zero on failure. Every failure is alerted (ALERT_TOPIC_ARN) and fails the
# heartbeat (HEARTBEAT_URL, pinged on success too), each when set: the run's own by the pipeline,
# the ones met here (lock held, env file refused, the CLI killed) through `pg-s3-backup alert`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tag=pg-s3-backup
env_file=${PG_S3_BACKUP_ENV_FILE:-}
reason=host-cron

usage() {
  echo "usage: $0 [--env-file FILE] [--reason TEXT]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --env-file) [ $# -ge 2 ] || usage; env_file=$2; shift 2 ;;
    --reason) [ $# -ge 2 ] || usage; reason=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) usage ;;
  esac
done

# PG_S3_BACKUP_SYSLOG: auto (default: when logger and a syslog socket exist), true, or false.
use_syslog=false
case "${PG_S3_BACKUP_SYSLOG:-auto}" in
  true) use_syslog=true ;;
  auto) if command -v logger >/dev/null 2>&1 && [ -S /dev/log ]; then use_syslog=true; fi ;;
esac

# log LEVEL MESSAGE...: a timestamped line on stdout, and the same to syslog.
log() {
  local level=$1; shift
  printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$level" "$*"
  if $use_syslog; then logger -t "$tag" -p "user.$level" -- "$*" || true; fi
}

node_bin=${NODE:-node}
# node's options wherever pg-s3-backup runs (infra/node-options.ts says why).
node_options=(--max-semi-space-size=1)

# report STAGE MESSAGE: a failure met outside the pipeline, alerted and sent to the heartbeat's
# /fail through the CLI (each if configured; bounded, so a dead SNS endpoint cannot hold cron).
report() {
  local stage=$1 message=$2 line
  if [ -z "${ALERT_TOPIC_ARN:-}" ] && [ -z "${HEARTBEAT_URL:-}" ]; then
    log warning "no ALERT_TOPIC_ARN nor HEARTBEAT_URL: this failure is only in this log"
    return 0
  fi
  if ! command -v "$node_bin" >/dev/null 2>&1; then
    log err "cannot report this failure: node is missing"
    return 0
  fi
  local bound=()
  if command -v timeout >/dev/null 2>&1; then bound=(timeout -k 5 "${PG_S3_BACKUP_ALERT_TIMEOUT:-120}"); fi
  ${bound[@]+"${bound[@]}"} "$node_bin" "${node_options[@]}" "$repo/bin/pg-s3-backup.mjs" alert --stage "$stage" --message "$message" 2>&1 </dev/null | while IFS= read -r line; do
    printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$line"
    if $use_syslog; then logger -t "$tag" -- "$line" || true; fi
  done || true
}

# fail STAGE MESSAGE: log, report, exit 1.
fail() {
  local stage=$1; shift
  log err "$*"
  report "$stage" "$*"
  exit 1
}

load_env_file() {
  local file=$1 mode owner line name value n=0
  [ -f "$file" ] || fail config "env file $file does not exist; create it (mode 0600) or pass --env-file"
  mode=$(stat -c '%a' "$file")
  owner=$(stat -c '%u' "$file")
  # Any group or other permission bit means someone else may read the credentials.
  if (( (8#$mode & 8#077) != 0 )); then
    fail config "env file $file has mode $mode: it holds credentials, make it private with: chmod 600 $file"
  fi
  if [ "$owner" != "$(id -u)" ] && [ "$owner" != 0 ]; then
    fail config "env file $file is owned by uid $owner: it must belong to the user running the backup ($(id -u)) or root"
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    line=${line#export }
    if [[ ! "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      fail config "env file $file line $n is not KEY=VALUE"
    fi
    name=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    # One pair of surrounding quotes is removed; nothing inside is expanded ($ and \ stay literal).
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    export "$name=$value"
  done < "$file"
}

if [ -n "$env_file" ]; then load_env_file "$env_file"; fi

lock_file=${PG_S3_BACKUP_LOCK_FILE:-}
if [ -z "$lock_file" ]; then
  if [ -d /run/lock ] && [ -w /run/lock ]; then lock_file=/run/lock/pg-s3-backup.lock; else lock_file=${TMPDIR:-/tmp}/pg-s3-backup.lock; fi
fi
command -v flock >/dev/null 2>&1 || fail config "flock is missing: install util-linux"
exec 9>>"$lock_file" || fail lock "cannot open the lock file $lock_file (set PG_S3_BACKUP_LOCK_FILE to a writable path)"
if ! flock -n 9; then
  fail lock "another backup is still running (lock $lock_file is held): this run is skipped; if no backup is running, check for a stuck process holding it"
fi

command -v "$node_bin" >/dev/null 2>&1 || fail config "node is missing: install Node.js 20 or later (or set NODE)"

log info "backup starting (reason: $reason)"
started=$(date +%s)
# The CLI writes one JSON line per event when its output is not a terminal: a reader timestamps
# each. Both run in the background so that a signal reaches this script while it waits:
# `systemctl stop` (or a shutdown) signals the whole group, `kill <this pid>` only this script.
# The CLI handles SIGTERM/SIGINT itself (stops pg_dump, aborts the upload, alerts "interrupted",
# exits 128+signal); the reader ignores them so that it records the CLI's last lines.
work=$(mktemp -d "${TMPDIR:-/tmp}/pg-s3-backup.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkfifo "$work/out"
(
  trap '' TERM INT
  while IFS= read -r line; do
    printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$line"
    if $use_syslog; then logger -t "$tag" -- "$line" || true; fi
  done < "$work/out"
) &
reader=$!
"$node_bin" "${node_options[@]}" "$repo/bin/pg-s3-backup.mjs" backup --reason "$reason" > "$work/out" 2>&1 &
cli=$!
interrupted=
# Passed on to the CLI (it takes a second signal within 2 s of the first as the same one, as
# when systemd signals both of us).
trap 'interrupted=TERM; kill -TERM "$cli" 2>/dev/null || true' TERM
trap 'interrupted=INT; kill -INT "$cli" 2>/dev/null || true' INT
set +e
wait "$cli"
status=$?
# `wait` returns early (status > 128) when a trapped signal arrives: the CLI is still cleaning up.
while [ "$status" -gt 128 ] && kill -0 "$cli" 2>/dev/null; do
  wait "$cli"
  status=$?
done
wait "$reader"
set -e
elapsed=$(( $(date +%s) - started ))
if [ -n "$interrupted" ]; then
  log err "backup INTERRUPTED by SIG$interrupted after ${elapsed}s (exit code $status): pg_dump stopped, upload aborted, alert published if ALERT_TOPIC_ARN is set"
  exit "$status"
fi
if [ "$status" -ne 0 ]; then
  log err "backup FAILED with exit code $status after ${elapsed}s"
  # Exit 1 is the CLI's own verdict: it has alerted and failed the heartbeat (its lines above say
  # whether SNS took it). Anything else (killed, crashed) may have left no alert: send one.
  if [ "$status" -ne 1 ]; then
    report run "pg-s3-backup backup ended with exit code $status after ${elapsed}s (killed or crashed): its own alert may not have gone out; see the host's log"
  fi
  exit "$status"
fi
log info "backup finished in ${elapsed}s"
