#!/usr/bin/env bash
# Build Asterisk 22 from Debian's `asterisk` source package (unstable suite) into a cached prefix.
#
#   contrib/build-asterisk.sh            build (or reuse) and print the prefix on the last line
#   contrib/build-asterisk.sh --print    print the prefix that would be used, build nothing
#   contrib/build-asterisk.sh --asan     the same for a second Asterisk built with AddressSanitizer
#                                        (menuselect ADDRESS_SANITIZER) into <cache>/asterisk-<v>-asan
#                                        (also: ASAN=1); combine with --print as needed
#
# Environment:
#   ASTERISK_PREFIX     use this existing Asterisk (must hold include/asterisk.h); nothing is built
#   ASTERISK_ASAN_PREFIX  the same for --asan (ASTERISK_PREFIX is ignored there: a plain Asterisk
#                       must never be mistaken for the sanitizer build)
#   PBX_PYTHON_CACHE    cache root (default /var/cache/pbx-python as root, else ~/.cache/pbx-python)
#   ASTERISK_VERSION    Debian source version to build (default: what the unstable suite carries,
#                       or the newest one already cached when the archive cannot be asked)
#
# The build is keyed by the Debian version: <cache>/asterisk-<version>/ holds the prefix, and a
# stamp file marks a finished build, so a fresh clone (CI) reuses it. Idempotent. Builds take a
# lock (<cache>/.build-<version>.lock), so concurrent callers wait instead of building twice.
#
# The ASan build unpacks its own copy of the same Debian source (dpkg-source -x of the .dsc the
# plain build fetched) under <cache>/src/<version>/asan/, so the two builds never share objects,
# and selects the same module set plus ADDRESS_SANITIZER (-fsanitize=address for Asterisk's own
# code; the bundled pjproject is built without it).
set -euo pipefail

log() { printf '[build-asterisk] %s\n' "$*" >&2; }

PRINT_ONLY=0
FLAVOR=""               # "" (plain) or "asan"
case "${ASAN:-}" in ""|0|no) ;; *) FLAVOR=asan ;; esac
for arg in "$@"; do
    case "$arg" in
        --print) PRINT_ONLY=1 ;;
        --asan) FLAVOR=asan ;;
        *) log "unknown argument $arg (expected --print and/or --asan)"; exit 2 ;;
    esac
done

if [ "$FLAVOR" = asan ]; then EXPLICIT_VAR=ASTERISK_ASAN_PREFIX; else EXPLICIT_VAR=ASTERISK_PREFIX; fi
EXPLICIT=${!EXPLICIT_VAR:-}
if [ -n "$EXPLICIT" ]; then
    if [ -f "$EXPLICIT/include/asterisk.h" ]; then
        log "using existing Asterisk at $EXPLICIT_VAR=$EXPLICIT"
        echo "$EXPLICIT"; exit 0
    fi
    log "$EXPLICIT_VAR=$EXPLICIT has no include/asterisk.h (run 'make install-headers' there)"
    exit 1
fi

if [ "$(id -u)" = 0 ]; then CACHE=${PBX_PYTHON_CACHE:-/var/cache/pbx-python}
else CACHE=${PBX_PYTHON_CACHE:-$HOME/.cache/pbx-python}; fi
mkdir -p "$CACHE/src"

SRC_LIST=/etc/apt/sources.list.d/pbx-python-unstable-src.sources
BUILD_DEPS=(build-essential dpkg-dev pkg-config bzip2 patch libedit-dev libjansson-dev libxml2-dev
            libsqlite3-dev uuid-dev libssl-dev liblua5.1-0-dev libsrtp2-dev libncurses-dev)

ensure_apt() {
    local missing=()
    for p in "${BUILD_DEPS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ "$(id -u)" != 0 ]; then
        [ ${#missing[@]} -eq 0 ] || { log "missing build dependencies (install as root): ${missing[*]}"; exit 1; }
        return
    fi
    if [ ! -f "$SRC_LIST" ]; then
        log "adding a deb-src line for Debian unstable (sources only; no binary packages from it)"
        cat > "$SRC_LIST" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: unstable
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        apt-get update -qq
    elif [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing build dependencies: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

pick_version() {
    if [ -n "${ASTERISK_VERSION:-}" ]; then echo "$ASTERISK_VERSION"; return; fi
    local v
    v=$(apt-cache showsrc asterisk 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | grep -E '^1:2[2-9]\.' | tail -1 || true)
    if [ -z "$v" ]; then  # archive unreachable: newest finished plain build in the cache
        v=$(ls -d "$CACHE"/asterisk-*/.pbx-python-build-ok 2>/dev/null | sed 's#.*/asterisk-##; s#/\.pbx-python-build-ok$##' \
            | grep -v -- '-asan$' | sort -V | tail -1 || true)
        [ -n "$v" ] && { echo "$v"; return; }
        log "cannot find an asterisk 22.x source package (is the deb-src line for unstable there?)"; exit 1
    fi
    echo "${v#1:}"
}

# The module set. A cached build whose stamp records another set is completed in place (the
# source tree and objects are kept, so adding a module rebuilds only what changed).
ENABLE=(
  chan_pjsip
  app_dial app_stack app_verbose app_exec app_userevent app_playback app_echo app_originate
  app_channelredirect app_while app_senddtmf app_read app_dumpchan app_chanisavail app_milliwatt
  app_playtones app_softhangup app_transfer app_waitforsilence app_authenticate
  bridge_simple bridge_native_rtp bridge_holding bridge_builtin_features bridge_builtin_interval_features
  codec_ulaw codec_alaw codec_gsm codec_a_mu format_wav format_gsm format_pcm format_sln
  pbx_config pbx_lua pbx_spool
  res_agi res_clioriginate res_rtp_asterisk res_timing_timerfd res_musiconhold res_speech
  res_sorcery_config res_sorcery_memory res_sorcery_astdb res_sorcery_realtime res_sorcery_memory_cache
  res_pjproject res_http_websocket res_crypto res_srtp res_format_attr_opus res_manager_devicestate
  res_pjsip res_pjsip_session res_pjsip_pubsub res_pjsip_header_funcs res_pjsip_endpoint_identifier_ip
  res_pjsip_endpoint_identifier_user res_pjsip_outbound_registration res_pjsip_registrar res_pjsip_authenticator_digest
  res_pjsip_outbound_authenticator_digest res_pjsip_caller_id res_pjsip_diversion res_pjsip_dtmf_info
  res_pjsip_sdp_rtp res_pjsip_nat res_pjsip_rfc3326 res_pjsip_refer res_pjsip_notify res_pjsip_logger
  res_pjsip_acl res_pjsip_dialog_info_body_generator res_pjsip_exten_state res_pjsip_mwi res_pjsip_one_touch_record_info
  res_pjsip_path res_pjsip_messaging res_pjsip_send_to_voicemail res_pjsip_rfc3329 res_pjsip_config_wizard
  res_pjsip_pidf_body_generator res_pjsip_xpidf_body_generator res_pjsip_pidf_eyebeam_body_augmentor
  res_pjsip_pidf_digium_body_augmentor res_pjsip_publish_asterisk res_pjsip_t38 res_pjsip_empty_info
  res_pjsip_transport_websocket res_pjsip_phoneprov_provider res_pjsip_sips_contact res_pjsip_history
  res_pjsip_mwi_body_generator res_pjsip_geolocation res_geolocation res_pjsip_aoc
  app_voicemail res_adsi res_smdi res_prometheus chan_iax2 app_directory app_sayunixtime
  # ARI (Stasis): the ARI peer of bench/callservice_e2e.py (bench/ari_app.py); res_ari_channels needs
  # the answer/playback/recording/snoop helpers, res_ari itself res_websocket_client
  app_stasis res_stasis res_stasis_answer res_stasis_playback res_stasis_recording res_stasis_snoop
  res_stasis_device_state res_websocket_client res_ari res_ari_model res_ari_applications res_ari_asterisk
  res_ari_bridges res_ari_channels res_ari_device_states res_ari_endpoints res_ari_events
)
# Fixes for Asterisk bugs our tests hit (each file says which and why), applied to both trees.
PATCH_DIR=$(cd "$(dirname "$0")" && pwd)/asterisk-patches
PATCHES=()
if [ -d "$PATCH_DIR" ]; then
    while IFS= read -r f; do PATCHES+=("$f"); done < <(ls "$PATCH_DIR"/*.patch 2>/dev/null | sort)
fi
MODULE_SET=$( { printf '%s\n' "${ENABLE[@]}" "flavor=$FLAVOR"; [ ${#PATCHES[@]} -eq 0 ] || cat "${PATCHES[@]}"; } \
              | sha1sum | cut -c1-12)

if [ "$(id -u)" = 0 ] && [ ! -f "$SRC_LIST" ]; then ensure_apt; fi
VERSION=$(pick_version)
PREFIX="$CACHE/asterisk-$VERSION${FLAVOR:+-$FLAVOR}"
STAMP="$PREFIX/.pbx-python-build-ok"

if [ "$PRINT_ONLY" = 1 ]; then echo "$PREFIX"; exit 0; fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$MODULE_SET" ]; then
    log "Asterisk $VERSION${FLAVOR:+ ($FLAVOR)} already built in $PREFIX"; echo "$PREFIX"; exit 0
fi

exec 9>"$CACHE/.build-$VERSION.lock"
if ! flock -n 9; then
    log "another build of Asterisk $VERSION is running; waiting for it"
    flock 9
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$MODULE_SET" ]; then
    log "Asterisk $VERSION${FLAVOR:+ ($FLAVOR)} already built in $PREFIX"; echo "$PREFIX"; exit 0
fi

ensure_apt
[ -f "$STAMP" ] && log "the cached build has another module set: adding what is missing"
log "building Asterisk $VERSION${FLAVOR:+ ($FLAVOR)} into $PREFIX"
T0=$(date +%s)
WORK="$CACHE/src/$VERSION"
mkdir -p "$WORK"
cd "$WORK"
if ! ls -d asterisk-*/ >/dev/null 2>&1; then
    apt-get source --only-source "asterisk=1:$VERSION" >&2
fi
SRCDIR=$(ls -d "$WORK"/asterisk-*/ | head -1)
SRCDIR=${SRCDIR%/}
if [ "$FLAVOR" = asan ]; then
    # A second, pristine tree from the same .dsc: the plain tree holds the plain build's objects.
    ASANDIR="$WORK/asan/$(basename "$SRCDIR")"
    if [ ! -f "$ASANDIR/configure" ]; then
        rm -rf "$WORK/asan"; mkdir -p "$WORK/asan"
        DSC=$(ls "$WORK"/asterisk_*.dsc | head -1)
        log "unpacking a separate source tree for the ASan build from $DSC"
        dpkg-source --no-check -x "$DSC" "$ASANDIR.tmp" >&2
        mv "$ASANDIR.tmp" "$ASANDIR"
    fi
    SRCDIR=$ASANDIR
fi
cd "$SRCDIR"
for p in "${PATCHES[@]}"; do
    if patch -p1 -R -s -f --dry-run < "$p" >/dev/null 2>&1; then continue; fi   # already applied
    log "applying $(basename "$p")"
    patch -p1 -N -s < "$p" >&2 || { log "cannot apply $p to $SRCDIR"; exit 1; }
done

# pjproject: the source package carries it as the Xpjproject component; make the tarball the
# bundled build expects and point the externals cache at it (as debian/rules does). Both trees
# share it (same source).
PJMAJ=$(grep -Po '^export PJ_VERSION_MAJOR\s+:=\s+\K\d+' Xpjproject/version.mak)
PJMIN=$(grep -Po '^export PJ_VERSION_MINOR\s+:=\s+\K\d+' Xpjproject/version.mak)
PJVER="$PJMAJ.$PJMIN"
PJDIR="$WORK/externals"
mkdir -p "$PJDIR"
if [ ! -f "$PJDIR/pjproject-$PJVER.tar.bz2" ]; then
    rm -f "$PJDIR/pjproject-$PJVER"
    ln -s "$SRCDIR/Xpjproject" "$PJDIR/pjproject-$PJVER"
    (cd "$PJDIR" && tar --create --dereference pjproject-$PJVER/* | bzip2 --fast > pjproject-$PJVER.tar.bz2)
fi
(cd "$PJDIR" && md5sum pjproject-$PJVER.tar.bz2) > third-party/pjproject/pjproject-$PJVER.tar.bz2.md5

export EXTERNALS_CACHE_DIR="$PJDIR"
if [ ! -f config.status ] || ! grep -qF -- "'--prefix=$PREFIX'" config.status; then
    ./configure --prefix="$PREFIX" --with-pjproject-bundled --with-externals-cache="$PJDIR" \
        --without-sdl --without-pwlib >&2
fi
make menuselect.makeopts >&2
M=menuselect/menuselect
for cat in MENUSELECT_ADDONS MENUSELECT_APPS MENUSELECT_BRIDGES MENUSELECT_CDR MENUSELECT_CEL \
           MENUSELECT_CHANNELS MENUSELECT_CODECS MENUSELECT_FORMATS MENUSELECT_FUNCS MENUSELECT_PBX \
           MENUSELECT_RES MENUSELECT_TESTS MENUSELECT_UTILS MENUSELECT_AGIS MENUSELECT_CORE_SOUNDS \
           MENUSELECT_MOH MENUSELECT_EXTRA_SOUNDS; do
    $M --disable-category "$cat" menuselect.makeopts >/dev/null
done
$M --disable BUILD_NATIVE menuselect.makeopts >/dev/null
for m in "${ENABLE[@]}"; do $M --enable "$m" menuselect.makeopts >/dev/null 2>&1 || log "note: cannot enable $m"; done
# every dialplan function whose libraries are present
$M --enable-category MENUSELECT_FUNCS menuselect.makeopts >/dev/null
for f in func_odbc func_curl func_realtime func_speex; do $M --disable $f menuselect.makeopts >/dev/null 2>&1 || true; done
if [ "$FLAVOR" = asan ]; then
    # Asterisk's own switch (build_tools/cflags.xml, Makefile.rules): -fsanitize=address
    # -fno-omit-frame-pointer for every Asterisk object and the link.
    $M --enable ADDRESS_SANITIZER menuselect.makeopts >/dev/null \
        || { log "menuselect refused ADDRESS_SANITIZER (does $(${CC:-gcc} --version | head -1) support -fsanitize=address? is libasan installed?)"; exit 1; }
    grep -q '^MENUSELECT_CFLAGS=.*ADDRESS_SANITIZER' menuselect.makeopts \
        || { log "ADDRESS_SANITIZER is not selected in menuselect.makeopts"; exit 1; }
fi

JOBS=$(nproc 2>/dev/null || echo 2)
make -j"$JOBS" >&2
make install install-headers >&2
if [ "$FLAVOR" = asan ] && ! ldd "$PREFIX/sbin/asterisk" | grep -q libasan; then
    log "$PREFIX/sbin/asterisk is not linked with libasan: the ASan build did not take effect"; exit 1
fi
# Record what was built, for the README, docs and test reports.
{
    echo "debian_version=$VERSION"
    echo "asterisk_version=$(cat .version)"
    echo "pjproject=$PJVER"
    echo "sanitizer=${FLAVOR:+address}"
    echo "build_seconds=$(( $(date +%s) - T0 ))"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "module_set=$MODULE_SET"
    echo "patches=$(for p in "${PATCHES[@]}"; do basename "$p"; done | tr '\n' ' ')"
} > "$PREFIX/.pbx-python-build-info"
echo "$MODULE_SET" > "$STAMP"
log "done in $(( $(date +%s) - T0 ))s: $PREFIX"
echo "$PREFIX"
