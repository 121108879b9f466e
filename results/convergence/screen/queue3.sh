#!/bin/bash
# File-driven queue (one training at a time): pops the first line "DIR|ARGS" of jobs.txt until it is empty.
# DIR is relative to /work/main/results/convergence; ARGS are mfsnn train arguments (without --out), or "--resume DIR --epochs N".
cd /work/main
export MFSNN_DATA=/work/shared/datasets
Q=${JOBS:-results/convergence/screen/jobs.txt}      # another queue file: JOBS=FILE bash queue3.sh
while [ -n "$WAITPID" ] && kill -0 $WAITPID 2>/dev/null; do sleep 10; done
while true; do
  line=$(head -n1 $Q); [ -z "$line" ] && break
  sed -i 1d $Q
  name=${line%%|*}; args=${line#*|}
  out=results/convergence/$name
  case "$args" in *--resume*) cmd="python -m mfsnn train --quiet $args";; *) cmd="python -m mfsnn train --quiet $args --out $out";; esac
  if [ "${args#*--resume}" = "$args" ] && [ -f $out/metrics.json ]; then echo "$(date -u +%T) $name exists, skipped"; continue; fi
  mkdir -p $out
  echo "$cmd" >> $out/command.txt
  echo "$(date -u +%T) start $name: $cmd"
  $cmd >> $out/train.log 2>&1
  echo "$(date -u +%T) end $name rc=$? $(python -c "import json;m=json.load(open('$out/metrics.json'));print(m['test_accuracy'])" 2>&1)"
done
echo "$(date -u +%T) queue empty"
