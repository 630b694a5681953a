# shellcheck shell=bash
# record.sh: the record of what lvsgen added on this host. Uses common.sh.
#
# One line per thing, fields separated by tabs: "file DEST", "addr CIDR DEV", "dummy DEV",
# "route FAMILY VIA DEV OLD", "sysctl KEY ORIGINAL SET", "link PATH", "nft FAMILY NAME". The IPVS services
# lvsgen added are kept apart, in ipvs-services, one name a line (see lvs_ipvs).
# A line is appended the moment the thing is added, so a run that dies halfway still knows
# what it added; removal drops the line. Nothing that is not in the record is ever removed.
declare -A LVS_REC=()
LVS_RECORD_HEADER='# what lvsgen added on this host; setup.sh removes only what is listed here'
LVS_REC_DIRTY=0 # set when a line is dropped: the record is then rewritten at the end

lvs_record_load() {
  local line unended=0
  LVS_REC=()
  [[ -f $LVSGEN_STATE/record ]] || return 0
  while IFS= read -r line || { [[ -n $line ]] && unended=1; }; do
    [[ -z $line || $line == '#'* ]] && continue
    lvs_record_key "$line"
    LVS_REC[$LVS_KEY]=$line
  done <"$LVSGEN_STATE/record"
  # A hand-edited record without a final newline: end it, so the next line stays apart.
  if ((unended && !LVS_DRY_RUN)); then printf '\n' >>"$LVSGEN_STATE/record"; fi
}

# lvs_record_key LINE: sets LVS_KEY to the identity of a record line (its kind and the
# fields that name the thing). No subshell: the record can hold thousands of lines.
lvs_record_key() {
  local kind=${1%%$'\t'*} rest=${1#*$'\t'}
  LVS_KEY=$kind$'\t'${rest%%$'\t'*}
  if [[ $kind == addr ]]; then
    rest=${rest#*$'\t'}
    LVS_KEY+=$'\t'${rest%%$'\t'*}
  fi
}

lvs_record_add() { # FIELD...: remember something lvsgen is about to add
  ((LVS_DRY_RUN)) && return 0
  local line
  printf -v line '%s\t' "$@"
  line=${line%$'\t'}
  lvs_record_key "$line"
  [[ ${LVS_REC[$LVS_KEY]-} == "$line" ]] && return 0
  LVS_REC[$LVS_KEY]=$line
  if [[ ! -f $LVSGEN_STATE/record ]]; then
    [[ -d $LVSGEN_STATE ]] || mkdir -p -- "$LVSGEN_STATE"
    printf '%s\n' "$LVS_RECORD_HEADER" >"$LVSGEN_STATE/record"
  fi
  printf '%s\n' "$line" >>"$LVSGEN_STATE/record"
}

lvs_record_drop() { # KEY
  unset 'LVS_REC[$1]'
  LVS_REC_DIRTY=1
}

lvs_record_save() { # rewrite the record without the lines removal dropped
  ((LVS_DRY_RUN || !LVS_REC_DIRTY)) && return 0
  [[ -d $LVSGEN_STATE ]] || mkdir -p -- "$LVSGEN_STATE"
  local tmp=$LVSGEN_STATE/record.lvsgen-new
  {
    printf '%s\n' "$LVS_RECORD_HEADER"
    if ((${#LVS_REC[@]} > 0)); then
      printf '%s\n' "${LVS_REC[@]}" | LC_ALL=C sort
    fi
  } >"$tmp"
  mv -f -- "$tmp" "$LVSGEN_STATE/record"
}
