# Helper of scripts/check-layers (POSIX awk: mawk, gawk and busybox run it). Reads lines
# "MODULE_PATH<TAB>FILE" (MODULE_PATH from the crate root, e.g. leader/plan or control/server).
#
# mode=deps: prints, for each module of the group (`mods`, children of `prefix`), the sibling
# modules its files name through `crate::` or `super::` paths (use trees included), then one line
# "CYCLE <modules>" per set of modules that reach each other, with the edges that close it.
# mode=deciding: prints "FILE: PATTERN" for each forbidden pattern a deciding file mentions.
#
# Comments and `#[cfg(test)] mod name { ... }` blocks are left out: what tests import does not
# make a layer, and a comment may well say what the code must not do.

BEGIN {
  nm = split(mods, M, " ")
  for (i = 1; i <= nm; i++) ismod[M[i]] = 1
  np = (prefix == "") ? 0 : split(prefix, P, "/")
  # Each pattern, and what it is when printed.
  nf = split("clock::unix_ms Instant::now SystemTime rand::rng([^A-Za-z0-9_]|$) tokio:: [.]await", FORBID, " ")
  split("clock::unix_ms Instant::now SystemTime rand::rng tokio:: .await", FORBID_NAME, " ")
}

function count(s, ch,   c, i) {
  c = 0
  for (i = 1; i <= length(s); i++) if (substr(s, i, 1) == ch) c++
  return c
}

# The file's code as one line: comments and test modules removed.
function readtext(file,   line, t, skipping, depth, pend) {
  t = ""; skipping = 0; pend = 0; depth = 0
  while ((getline line < file) > 0) {
    sub(/\/\/.*/, "", line)
    if (skipping) {
      depth += count(line, "{") - count(line, "}")
      if (depth <= 0) skipping = 0
      continue
    }
    if (pend) {
      if (line ~ /^[ \t]*$/ || line ~ /^[ \t]*#\[/) continue
      pend = 0
      if (line ~ /^[ \t]*(pub(\([a-z]+\))?[ \t]+)?mod[ \t]+[A-Za-z0-9_]+[ \t]*\{/) {
        depth = count(line, "{") - count(line, "}")
        if (depth > 0) skipping = 1
        continue
      }
    }
    if (line ~ /^[ \t]*#\[cfg\(test\)\][ \t]*$/) { pend = 1; continue }
    t = t " " line
  }
  close(file)
  return t
}

function skipws() {
  while (pos <= n && substr(T, pos, 1) ~ /[ \t]/) pos++
}

function ident(   s) {
  skipws()
  if (match(substr(T, pos), /^[A-Za-z_][A-Za-z0-9_]*/)) {
    s = substr(T, pos, RLENGTH)
    pos += RLENGTH
    return s
  }
  return ""
}

# A path (segments joined by "/") that names something: an edge if it goes through a sibling.
function emit(path, file,   S, c, i, x) {
  c = split(path, S, "/")
  if (c <= np) return
  for (i = 1; i <= np; i++) if (S[i] != P[i]) return
  x = S[np + 1]
  if ((x in ismod) && x != own && !((own, x) in edge)) edge[own, x] = file
}

# A use tree (or an expression path) at pos, below the path `base`.
function tree(base, file,   seg, path, c, before) {
  skipws()
  c = substr(T, pos, 1)
  if (c == "{") {
    pos++
    while (pos <= n) {
      skipws()
      c = substr(T, pos, 1)
      if (c == "}") { pos++; return }
      if (c == ",") { pos++; continue }
      before = pos
      tree(base, file)
      if (pos == before) pos++
    }
    return
  }
  if (c == "*") { pos++; emit(base, file); return }
  seg = ident()
  if (seg == "") return
  path = (seg == "self") ? base : ((base == "") ? seg : base "/" seg)
  emit(path, file)
  skipws()
  if (substr(T, pos, 2) == "::") { pos += 2; tree(path, file) }
}

function scan(file,   start, pre, k, base, j) {
  pos = 1; n = length(T)
  while (pos <= n) {
    if (!match(substr(T, pos), /(crate|super)::/)) break
    start = pos + RSTART - 1
    pos = start + RLENGTH
    pre = (start > 1) ? substr(T, start - 1, 1) : " "
    if (pre ~ /[A-Za-z0-9_$]/) continue
    base = ""
    if (substr(T, start, 5) == "super") {
      k = 1
      while (substr(T, pos, 7) == "super::") { k++; pos += 7 }
      if (k > d) continue
      for (j = 1; j <= d - k; j++) base = (base == "") ? MP[j] : base "/" MP[j]
    }
    tree(base, file)
  }
}

{
  split($0, F, "\t")
  d = split(F[1], MP, "/")
  own = MP[np + 1]
  T = readtext(F[2])
  if (mode == "deciding") {
    for (i = 1; i <= nf; i++) if (T ~ FORBID[i]) print F[2] ": " FORBID_NAME[i]
    next
  }
  scan(F[2])
}

END {
  if (mode != "deps") exit
  for (i = 1; i <= nm; i++) {
    out = ""
    for (j = 1; j <= nm; j++) if ((M[i], M[j]) in edge) out = out " " M[j]
    printf "  %-14s ->%s\n", M[i], (out == "" ? " (none)" : out)
  }
  for (i = 1; i <= nm; i++) for (j = 1; j <= nm; j++) reach[i, j] = ((M[i], M[j]) in edge)
  for (k = 1; k <= nm; k++) for (i = 1; i <= nm; i++) if (reach[i, k])
    for (j = 1; j <= nm; j++) if (reach[k, j]) reach[i, j] = 1
  for (i = 1; i <= nm; i++) {
    if (i in placed) continue
    set = M[i]; size = 1
    for (j = i + 1; j <= nm; j++) if (reach[i, j] && reach[j, i]) { set = set " " M[j]; placed[j] = 1; size++ }
    if (size < 2) continue
    print "CYCLE " set
    c = split(set, C, " ")
    for (a = 1; a <= c; a++) for (b = 1; b <= c; b++)
      if ((C[a], C[b]) in edge) print "    " C[a] " -> " C[b] "  (" edge[C[a], C[b]] ")"
  }
}
