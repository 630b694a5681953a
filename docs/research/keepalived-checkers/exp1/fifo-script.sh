#!/bin/bash
# lvs_notify_fifo_script under test: logs how it is invoked, then each line with a timestamp.
# MODE (from /run/ka-lab/script-mode): normal | slow (3 s per line) | die (exits after 2 lines)
LOG=/test/out/fifo-script.log
mode=$(cat /run/ka-lab/script-mode 2>/dev/null || echo normal)
echo "$EPOCHREALTIME START pid=$$ ppid=$PPID uid=$(id -u) mode=$mode argc=$# args=[$*] stdin=$(readlink /proc/$$/fd/0) fifo_type=$(stat -c %F "$1" 2>&1)" >> $LOG
n=0
trap 'echo "$EPOCHREALTIME SIGNAL TERM pid=$$" >> $LOG; exit 0' TERM
while IFS= read -r line; do
  n=$((n+1)); echo "$EPOCHREALTIME LINE pid=$$ $line" >> $LOG
  [[ $mode == slow ]] && sleep 3
  [[ $mode == die && $n -ge 2 ]] && { echo "$EPOCHREALTIME DYING pid=$$" >> $LOG; exit 3; }
done < "$1"
echo "$EPOCHREALTIME EOF pid=$$" >> $LOG
