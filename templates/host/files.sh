# shellcheck shell=bash
# files.sh: the host's files (step files), installed atomically and only when their bytes or
# mode differ; the boot copy of the host folder (step copy, /var/lib/lvsgen/host); the boot
# units, enabled as 'systemctl enable' would (step boot-unit). Uses common.sh and record.sh.
umask 022
declare -A LVS_MODE=() LVS_SIZE=() LVS_SUM=() # path -> mode (as stat prints it), size, MD5 sum

# lvs_inspect_files PATH...: the modes, sizes and checksums of those that exist, by one stat and
# at most one md5sum for all of them, so that a run with nothing to change reads no file in
# bash, whatever the size of the rules file. MD5 only tells an installed copy from its source
# here; anyone who can plant a collision in /etc is root already.
# The sums are kept per boot ($LVSGEN_RUN/sums) under each file's stat signature (size, inode,
# mtime and ctime in nanoseconds): a file whose signature is the same has the same bytes, and
# is not read again. Any write changes the ctime, which no one can set back; a signature whose
# ctime is within two seconds of the sum is not kept (a write in the same clock tick as the
# sum would not show), so the next run sums that file again.
declare -A LVS_SIG=() LVS_SUMS_KEPT=() # path -> "size inode mtime ctime"; -> "signature sum" as kept
LVS_SUMS_READ=0
lvs_inspect_files() {
  local -a present=() unsure=()
  local p m size ino mtime ctime name sig
  for p in "$@"; do
    if [[ -f $p ]]; then present+=("$p"); fi
  done
  ((${#present[@]} > 0)) || return 0
  if ((!LVS_SUMS_READ)); then
    LVS_SUMS_READ=1
    if [[ -r $LVSGEN_RUN/sums ]]; then
      while read -r size ino mtime ctime m name; do
        if [[ -n $name ]]; then LVS_SUMS_KEPT[$name]="$size $ino $mtime $ctime $m"; fi
      done <"$LVSGEN_RUN/sums"
    fi
  fi
  while read -r m size ino mtime ctime name; do
    [[ -n $name ]] || continue
    sig="$size $ino $mtime $ctime"
    LVS_MODE[$name]=$m LVS_SIZE[$name]=$size LVS_SIG[$name]=$sig
    p=${LVS_SUMS_KEPT[$name]-}
    if [[ -n $p && ${p% *} == "$sig" ]]; then
      LVS_SUM[$name]=${p##* }
    else
      unsure+=("$name")
    fi
  done <<<"$(stat -c '%a %s %i %.9Y %.9Z %n' -- "${present[@]}" 2>/dev/null || true)"
  ((${#unsure[@]} > 0)) || return 0
  while read -r m name; do
    if [[ -n $name ]]; then LVS_SUM[$name]=$m; fi
  done <<<"$(md5sum -- "${unsure[@]}" 2>/dev/null || true)"
}

# lvs_sums_save: keep the sums of the files this run inspected (see lvs_inspect_files). A file
# this run wrote is a new inode, so its old signature never matches again. Not in a dry run.
lvs_sums_save() {
  ((LVS_DRY_RUN || ${#LVS_SIG[@]} == 0)) && return 0
  [[ -d $LVSGEN_RUN ]] || return 0
  local name sig ctime text='' now=${LVS_NOW:-$EPOCHSECONDS} # LVS_NOW: for the tests
  for name in "${!LVS_SIG[@]}"; do
    sig=${LVS_SIG[$name]}
    [[ -n ${LVS_SUM[$name]-} ]] || continue
    ctime=${sig##* }
    [[ $ctime == [0-9]*.[0-9]* ]] || continue # a stat that does not print nanoseconds
    ((${ctime%%.*} + 2 < now)) || continue
    text+="$sig ${LVS_SUM[$name]} $name"$'\n'
  done
  printf '%s' "$text" >"$LVSGEN_RUN/sums"
}

# lvs_sync_files SRC DEST MODE [SRC DEST MODE ...]: install each SRC as DEST unless DEST
# already has its bytes and mode. Both must have been inspected (lvs_inspect_files): equal
# sums mean equal bytes. A file is written next to DEST and renamed over it: a small one from
# bash, a large one (a rules file of thousands of lines) by cp, which reads it much faster.
LVS_BIG=262144 # bash reads some 5 MB/s under emulation; a cp costs what bash takes for 200 KB
lvs_sync_files() {
  # The folders that are missing, made by one mkdir.
  local -a dirs=()
  local i dir
  for ((i = 2; i <= $#; i += 3)); do
    dir=${!i}
    dir=${dir%/*}
    if [[ ! -d $dir ]] && ! lvs_in "$dir" "${dirs[@]}"; then dirs+=("$dir"); fi
  done
  if ((${#dirs[@]} > 0 && !LVS_DRY_RUN)); then
    mkdir -p -- "${dirs[@]}" || lvs_die "cannot create ${dirs[*]}"
  fi
  local src dest mode want
  while (($# >= 3)); do
    src=$1 dest=$2 mode=$3
    shift 3
    [[ -n ${LVS_SUM[$src]-} ]] || lvs_die "$src is missing from the host folder or unreadable: copy the whole folder"
    if [[ ${LVS_SUM[$dest]-} == "${LVS_SUM[$src]}" ]]; then
      [[ ${LVS_MODE[$dest]-} == "${mode#0}" ]] || lvs_run chmod "$mode" -- "$dest"
      continue
    fi
    if ((LVS_DRY_RUN || ${LVS_SIZE[$src]:-0} > LVS_BIG)); then
      lvs_write_file "$src" "$dest" "$mode"
      continue
    fi
    want=
    IFS= read -r -d '' want <"$src" || true
    lvs_write_file "$src" "$dest" "$mode" "$want"
  done
}

# With LVS_STAGING=1 (lvs_copy_stage), DEST is only staged: written next to it, and left for
# lvs_copy_commit to rename and to print.
LVS_STAGING=0
LVS_STAGED=() # DEST, what installing it prints; DEST, ...
lvs_write_file() { # SRC DEST MODE [TEXT]: write TEXT (else a copy of SRC) to DEST atomically, with MODE
  local src=$1 dest=$2 mode=$3 what
  LVS_CHANGES=$((LVS_CHANGES + 1))
  printf -v what 'install -D -m %q -- %q %q' "$mode" "$src" "$dest"
  if ((LVS_DRY_RUN)); then
    printf 'lvsgen[%s]: would run: %s\n' "$LVS_HOST" "$what"
    return 0
  fi
  ((LVS_STAGING)) || printf 'lvsgen[%s]: + %s\n' "$LVS_HOST" "$what"
  [[ -d ${dest%/*} ]] || mkdir -p -- "${dest%/*}" || lvs_die "cannot create ${dest%/*}"
  if (($# >= 4)); then
    printf '%s' "$4" >"$dest.lvsgen-new" || lvs_die "cannot write $dest.lvsgen-new"
    if [[ $mode != 0644 ]]; then
      chmod "$mode" -- "$dest.lvsgen-new" || lvs_die "cannot chmod $dest.lvsgen-new"
    fi
  else
    # A new file (not one an earlier run left), so that it has the mode of SRC less the umask.
    cp --remove-destination -- "$src" "$dest.lvsgen-new" || lvs_die "cannot copy $src to $dest.lvsgen-new"
    if [[ ${LVS_MODE[$src]-} != "${mode#0}" ]]; then
      chmod "$mode" -- "$dest.lvsgen-new" || lvs_die "cannot chmod $dest.lvsgen-new"
    fi
  fi
  if ((LVS_STAGING)); then
    LVS_STAGED+=("$dest" "$what")
    return 0
  fi
  mv -f -- "$dest.lvsgen-new" "$dest" || lvs_die "cannot rename $dest.lvsgen-new to $dest"
  if [[ $dest == /etc/systemd/system/* ]]; then LVS_UNITS_CHANGED=1; fi
}

# The host's files, in two functions, so that the table's plan can start between them
# (lvsgen_main). lvs_files_inspect: each file is recorded before it is written, and one stat and
# one md5sum inspect them, their sources and the boot copy's files (lvs_copy).
lvs_files_inspect() {
  lvs_step files
  local entry src
  local -a paths=()
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    paths+=("$LVS_HERE/$src" "/$src" "$LVSGEN_STATE/host/$src")
    lvs_record_add file "/$src"
  done
  if [[ -n ${LVS_IMAGE:-} ]]; then paths+=("$LVS_HERE/$LVS_IMAGE" "$LVSGEN_STATE/host/$LVS_IMAGE"); fi
  lvs_inspect_files "${paths[@]}" "$LVS_HERE/setup.sh" "$LVS_HERE/lvsgen.sh" \
    "$LVSGEN_STATE/host/setup.sh" "$LVSGEN_STATE/host/lvsgen.sh"
}

# lvs_files: after lvs_files_inspect, the files installed and the boot copy's staged.
lvs_files() {
  lvs_step files
  local entry src
  local -a sync=()
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    sync+=("$LVS_HERE/$src" "/$src" "${entry##* }")
  done
  lvs_sync_files "${sync[@]}"
  lvs_copy_stage
  lvs_step files
}

# The copy of the host folder that the boot unit runs (and that monitoring can run with
# --dry-run), under the state folder, so that a reboot does not depend on where the user
# copied the host folder. It is updated last, after everything else succeeded: a failed run
# leaves the last good copy. cloud-init writes the host folder there directly.
# Its new files are written early (lvs_copy_stage, while the table is planned or loaded, when
# the run would otherwise wait), next to the old ones; lvs_copy renames them into place.
LVS_COPY='' LVS_COPY_TMP='' LVS_COPY_WHAT=''
lvs_copy() {
  lvs_step copy
  if [[ -n $LVS_COPY ]]; then
    lvs_copy_commit
    return 0
  fi
  local copy=$LVSGEN_STATE/host
  [[ $LVS_HERE -ef $copy ]] && return 0
  if [[ ! -e $copy ]]; then
    lvs_copy_new "$copy"
    return 0
  fi
  lvs_copy_sync "$copy"
}

lvs_copy_sync() { # COPY: lvs_sync_files of the host folder's files to COPY
  local copy=$1 entry src
  local -a sync=("$LVS_HERE/setup.sh" "$copy/setup.sh" 0755 "$LVS_HERE/lvsgen.sh" "$copy/lvsgen.sh" 0644)
  if [[ -n ${LVS_IMAGE:-} ]]; then sync+=("$LVS_HERE/$LVS_IMAGE" "$copy/$LVS_IMAGE" 0644); fi
  for entry in "${LVS_FILES[@]}"; do
    src=${entry% *}
    sync+=("$LVS_HERE/$src" "$copy/$src" "${entry##* }")
  done
  lvs_sync_files "${sync[@]}"
}

# lvs_copy_stage: the boot copy's changed files (or the whole first copy, in a folder next to
# it) written, not yet renamed. What a failed run staged is removed when it exits (the EXIT
# trap); lvs_copy_commit renames it. Not in a dry run, which only says what lvs_copy would do.
lvs_copy_stage() {
  ((LVS_DRY_RUN)) && return 0
  local copy=$LVSGEN_STATE/host
  [[ $LVS_HERE -ef $copy ]] && return 0
  lvs_step copy
  LVS_COPY=$copy
  trap lvs_copy_unstage EXIT
  if [[ ! -e $copy ]]; then
    lvs_copy_new "$copy" stage
    return 0
  fi
  LVS_STAGING=1
  lvs_copy_sync "$copy"
  LVS_STAGING=0
}

# lvs_copy_commit: rename what lvs_copy_stage wrote, saying what each rename installs.
lvs_copy_commit() {
  local i dest
  if [[ -n $LVS_COPY_TMP ]]; then
    lvs_say "+ $LVS_COPY_WHAT"
    mv -T -- "$LVS_COPY_TMP" "$LVS_COPY" || lvs_die "cannot rename $LVS_COPY_TMP to $LVS_COPY"
    LVS_COPY_TMP=
  fi
  for ((i = 0; i < ${#LVS_STAGED[@]}; i += 2)); do
    dest=${LVS_STAGED[i]}
    lvs_say "+ ${LVS_STAGED[i + 1]}"
    mv -f -- "$dest.lvsgen-new" "$dest" || lvs_die "cannot rename $dest.lvsgen-new to $dest"
  done
  LVS_STAGED=()
}

lvs_copy_unstage() { # the EXIT trap: remove what a run that failed staged
  local -a left=()
  local i
  [[ -z ${LVS_COPY_TMP:-} ]] || left+=("$LVS_COPY_TMP")
  for ((i = 0; i < ${#LVS_STAGED[@]}; i += 2)); do left+=("${LVS_STAGED[i]}.lvsgen-new"); done
  ((${#left[@]} == 0)) || rm -rf -- "${left[@]}" || true
}

# lvs_copy_new COPY [stage]: the first copy, made whole by one cp into a folder next to it and then
# renamed into place, so that it costs three processes however many files there are. With
# 'stage', the folder is only made: lvs_copy_commit renames it.
lvs_copy_new() {
  local copy=$1 tmp=$1.lvsgen-new entry src mode
  local -a names=(setup.sh lvsgen.sh) modes=(0755 0644)
  if [[ -n ${LVS_IMAGE:-} ]]; then
    names+=("$LVS_IMAGE")
    modes+=(0644)
  fi
  for entry in "${LVS_FILES[@]}"; do
    names+=("${entry% *}")
    modes+=("${entry##* }")
  done
  LVS_CHANGES=$((LVS_CHANGES + ${#names[@]}))
  local what
  printf -v what 'cp --parents -- %s %q/ (the boot copy, %d files)' "${names[*]}" "$copy" "${#names[@]}"
  if ((LVS_DRY_RUN)); then
    lvs_say "would run: $what"
    return 0
  fi
  [[ ${2:-} == stage ]] || lvs_say "+ $what"
  [[ ! -e $tmp ]] || rm -rf -- "$tmp" # what a run that died here left
  mkdir -p -- "$tmp" || lvs_die "cannot create $tmp"
  if [[ ${2:-} == stage ]]; then LVS_COPY_TMP=$tmp LVS_COPY_WHAT=$what; fi
  cd -- "$LVS_HERE" || lvs_die "cannot enter $LVS_HERE"
  cp --parents -- "${names[@]}" "$tmp/" || lvs_die "cannot copy the host folder to $tmp"
  cd -- "$OLDPWD" || lvs_die "cannot go back to $OLDPWD"
  # cp gave each copy its source's mode (less the umask); put right the ones that differ.
  local i
  for i in "${!names[@]}"; do
    src=$LVS_HERE/${names[i]}
    mode=${modes[i]}
    if [[ ${LVS_MODE[$src]-} != "${mode#0}" ]]; then
      chmod "$mode" -- "$tmp/${names[i]}" || lvs_die "cannot chmod $tmp/${names[i]}"
    fi
  done
  [[ ${2:-} == stage ]] && return 0
  mv -T -- "$tmp" "$copy" || lvs_die "cannot rename $tmp to $copy"
}

# The boot units: installed like any file (lvs_files), then enabled by the symlink that
# 'systemctl enable' would make, so that it works with or without a running systemd.
LVS_WANTS=/etc/systemd/system/multi-user.target.wants
lvs_enable_unit() {
  ((${#LVS_UNITS[@]} > 0)) || return 0
  lvs_step boot-unit
  local unit link
  for unit in "${LVS_UNITS[@]}"; do
    link=$LVS_WANTS/${unit##*/}
    if ! [[ -L $link && $link -ef /$unit ]]; then
      [[ -d $LVS_WANTS ]] || lvs_run mkdir -p -- "$LVS_WANTS"
      lvs_record_add link "$link"
      lvs_run ln -sfn -- "/$unit" "$link"
      LVS_UNITS_CHANGED=1
    fi
  done
}

# A running systemd learns of a unit that was added, changed or removed.
lvs_systemd_reload() {
  ((LVS_UNITS_CHANGED)) || return 0
  [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null || return 0
  lvs_step boot-unit
  lvs_run systemctl daemon-reload
}
