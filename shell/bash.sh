# shellcheck shell=bash
# conda-safeguard for bash: the typed-name prompt before a protected environment is destroyed,
# and a snapshot before an environment changes, for what the conda plugin cannot reach:
# mamba 2, micromamba, `conda --no-plugins` (CONDA_NO_PLUGINS=true) and conda older than 23.7.
#
# `conda`, `mamba` and `micromamba` (those installed when this is evaluated) become shell
# functions. An existing function of that name (conda.sh's `conda`, micromamba's or mamba's
# shell hook) is kept as __safeguard_orig_<tool> and called as before. Only commands that can
# change or destroy an env (install, update, upgrade, remove, uninstall, create, rename,
# env create|update|remove, env config vars set|unset) first run the guard:
#     python -m conda_safeguard guard --tool TOOL -- ARGS...
# Its exit status: 0 run the command (a snapshot was taken, or the conda plugin will decide),
# 4 refused, 130 interrupted, anything else an error. The command runs only on 0, with its
# arguments untouched, and its exit status is returned. Every other command runs directly,
# without starting Python.
#
# CONDA_SAFEGUARD_SHELL=0 turns the wrappers off. `__safeguard_doctor` checks the setup.
# Fail-open choice: if the Python below no longer exists (conda-safeguard uninstalled, the env
# holding it removed), commands run unguarded after a one-line warning, so a broken install
# cannot lock you out of conda. Any other guard failure stops the command (fail closed).

_SAFEGUARD_PYTHON=__SAFEGUARD_PYTHON__

# Does this command line change or destroy an env? Only the subcommand is looked at here.
__safeguard_mutates() {
    \local _SAFEGUARD_ARG _SAFEGUARD_ENV="" _SAFEGUARD_SKIP=""
    for _SAFEGUARD_ARG in "$@"; do
        if [ -n "$_SAFEGUARD_SKIP" ]; then
            _SAFEGUARD_SKIP=""
            continue
        fi
        case "$_SAFEGUARD_ARG" in
        --) \return 1 ;;
        -n | -p | -c | -f | -r | --name | --prefix | --channel | --file | --root-prefix | \
            --rc-file | --log-level | --console) _SAFEGUARD_SKIP=1 ;;
        -*) ;;
        *)
            # _SAFEGUARD_ENV: the words of `env config vars` read so far
            case "$_SAFEGUARD_ENV:$_SAFEGUARD_ARG" in
            :install | :update | :upgrade | :remove | :uninstall | :create | :rename) \return 0 ;;
            :env) _SAFEGUARD_ENV="env" ;;
            env:create | env:update | env:remove | vars:set | vars:unset) \return 0 ;;
            env:config) _SAFEGUARD_ENV=config ;;
            config:vars) _SAFEGUARD_ENV=vars ;;
            *) \return 1 ;;
            esac
            ;;
        esac
    done
    \return 1
}

# The real command: the function this snippet found, else the executable on PATH.
__safeguard_run() {
    \local _SAFEGUARD_TOOL="$1"
    \builtin shift
    if \builtin declare -F "__safeguard_orig_$_SAFEGUARD_TOOL" >/dev/null; then
        "__safeguard_orig_$_SAFEGUARD_TOOL" "$@"
    else
        \command "$_SAFEGUARD_TOOL" "$@"
    fi
}

__safeguard_wrap() {
    \local _SAFEGUARD_TOOL="$1" _SAFEGUARD_STATUS=0
    \builtin shift
    if [ "${CONDA_SAFEGUARD_SHELL-}" != 0 ] && __safeguard_mutates "$@"; then
        if [ -x "${_SAFEGUARD_PYTHON-}" ]; then
            PYTHONSAFEPATH=1 "$_SAFEGUARD_PYTHON" -m conda_safeguard guard \
                --tool "$_SAFEGUARD_TOOL" -- "$@" || _SAFEGUARD_STATUS=$?
            case "$_SAFEGUARD_STATUS" in
            0) ;;
            4 | 130) \return "$_SAFEGUARD_STATUS" ;;
            *)
                \builtin printf 'conda-safeguard: the guard failed (exit status %s), so %s was not run. To check the setup: __safeguard_doctor. To run it unguarded: CONDA_SAFEGUARD_SHELL=0 %s ...\n' \
                    "$_SAFEGUARD_STATUS" "$_SAFEGUARD_TOOL" "$_SAFEGUARD_TOOL" >&2
                \return "$_SAFEGUARD_STATUS"
                ;;
            esac
        else
            \builtin printf 'conda-safeguard: warning: %s is missing, so this %s command runs unguarded (no snapshot, no prompt). Run __safeguard_doctor.\n' \
                "${_SAFEGUARD_PYTHON-(unset)}" "$_SAFEGUARD_TOOL" >&2
        fi
    fi
    __safeguard_run "$_SAFEGUARD_TOOL" "$@"
}

# Wrap each tool once: an existing function is kept as __safeguard_orig_<tool>; a tool that is
# neither a function nor on PATH is left alone (so `command -v mamba` keeps telling the truth).
__safeguard_wrap_tools() {
    \local _SAFEGUARD_TOOL _SAFEGUARD_DEF
    for _SAFEGUARD_TOOL in conda mamba micromamba; do
        if \builtin declare -F "$_SAFEGUARD_TOOL" >/dev/null; then
            _SAFEGUARD_DEF=$(\builtin declare -f "$_SAFEGUARD_TOOL")
            case "$_SAFEGUARD_DEF" in
            *__safeguard_wrap*) continue ;; # already wrapped
            esac
            \builtin eval "__safeguard_orig_$_SAFEGUARD_DEF"
        elif \builtin type -P "$_SAFEGUARD_TOOL" >/dev/null; then
            \builtin unset -f "__safeguard_orig_$_SAFEGUARD_TOOL"
        else
            continue
        fi
        \builtin eval "function $_SAFEGUARD_TOOL { __safeguard_wrap $_SAFEGUARD_TOOL \"\$@\"; }"
    done
}

# Says whether the snippet can do its job here; exit status 1 when something is wrong.
# shellcheck disable=SC2016 # the eval lines are printed, not run
__safeguard_doctor() {
    \local _SAFEGUARD_TOOL _SAFEGUARD_DEF _SAFEGUARD_BAD=0
    \builtin printf 'conda-safeguard shell snippet: loaded (bash)\n'
    if [ ! -x "${_SAFEGUARD_PYTHON-}" ]; then
        \builtin printf '  PROBLEM: its Python %s is missing: commands run unguarded. Reinstall conda-safeguard, then re-run: eval "$(conda-safeguard shell bash)"\n' "${_SAFEGUARD_PYTHON-(unset)}"
        _SAFEGUARD_BAD=1
    elif ! "$_SAFEGUARD_PYTHON" -m conda_safeguard --version >/dev/null 2>&1; then
        \builtin printf '  PROBLEM: %s cannot run conda_safeguard: guarded commands fail. Reinstall conda-safeguard there, or re-run: eval "$(conda-safeguard shell bash)"\n' "$_SAFEGUARD_PYTHON"
        _SAFEGUARD_BAD=1
    else
        \builtin printf '  python: %s (ok)\n' "$_SAFEGUARD_PYTHON"
    fi
    if [ "${CONDA_SAFEGUARD_SHELL-}" = 0 ]; then
        \builtin printf '  note: CONDA_SAFEGUARD_SHELL=0: the wrappers are off\n'
    fi
    for _SAFEGUARD_TOOL in conda mamba micromamba; do
        if \builtin declare -F "$_SAFEGUARD_TOOL" >/dev/null; then
            _SAFEGUARD_DEF=$(\builtin declare -f "$_SAFEGUARD_TOOL")
            case "$_SAFEGUARD_DEF" in
            *__safeguard_wrap*)
                if \builtin declare -F "__safeguard_orig_$_SAFEGUARD_TOOL" >/dev/null; then
                    \builtin printf '  %s: guarded (delegates to the earlier %s function)\n' "$_SAFEGUARD_TOOL" "$_SAFEGUARD_TOOL"
                else
                    \builtin printf '  %s: guarded\n' "$_SAFEGUARD_TOOL"
                fi
                ;;
            *)
                \builtin printf '  PROBLEM: %s: a %s function defined after the snippet replaced the wrapper. Put the eval line after conda'"'"'s "conda initialize" block (or run __safeguard_wrap_tools).\n' "$_SAFEGUARD_TOOL" "$_SAFEGUARD_TOOL"
                _SAFEGUARD_BAD=1
                ;;
            esac
        elif \builtin type -P "$_SAFEGUARD_TOOL" >/dev/null; then
            \builtin printf '  PROBLEM: %s: on PATH but not guarded (it appeared after the snippet was loaded). Run __safeguard_wrap_tools, or open a new shell.\n' "$_SAFEGUARD_TOOL"
            _SAFEGUARD_BAD=1
        else
            \builtin printf '  %s: not installed\n' "$_SAFEGUARD_TOOL"
        fi
    done
    \return "$_SAFEGUARD_BAD"
}

__safeguard_wrap_tools

# To install, add this line to ~/.bashrc, after conda's "conda initialize" block:
#   eval "$(conda-safeguard shell bash)"
