#!/bin/sh
# The functions' AWS_LAMBDA_EXEC_WRAPPER (infra/node-options.ts says why): Lambda's Node.js runtime
# starts node with a young-generation size of its own on the command line
# (--max-semi-space-size=<the function's memory ÷ 20>, 150 MiB at 3,008 MB), and node's command
# line wins over NODE_OPTIONS. That option is left out here, so the function's NODE_OPTIONS
# decides; the rest of the runtime's command (node, its other options, the runtime's entry) is
# run unchanged.
drop_value=
for arg do
  shift
  if [ -n "$drop_value" ]; then
    drop_value=
    continue
  fi
  case "$arg" in
    --max-semi-space-size=* | --max_semi_space_size=*) continue ;;
    --max-semi-space-size | --max_semi_space_size) drop_value=1; continue ;;
  esac
  set -- "$@" "$arg"
done
exec "$@"
