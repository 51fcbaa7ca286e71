/** What a completion script completes: every command, its subcommands and its options. */
export interface CompletionSpec {
  readonly name: string;
  readonly subcommands: readonly string[];
  readonly options: readonly string[];
}

export const COMPLETION_SHELLS = ['bash', 'zsh'] as const;

function words(list: readonly string[]): string {
  return list.join(' ');
}

/**
 * A bash completion script for `dfs` (also what zsh runs, through bashcompinit): the first word
 * completes to a command, the second to a subcommand where the command has them, later words
 * to the command's options (after "-") or to local file names.
 */
function bashScript(commands: readonly CompletionSpec[], globalOptions: readonly string[]): string {
  const cases = commands
    .map((c) => `    ${c.name}) subs="${words(c.subcommands)}"; opts="${words([...new Set([...c.options, ...globalOptions])])}" ;;`)
    .join('\n');
  return `# dfs completion for bash: eval "$(dfs completion bash)" (in ~/.bashrc to keep it)
_dfs_complete() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${words(commands.map((c) => c.name))} ${words(globalOptions)}" -- "$cur") )
    return
  fi
  local subs="" opts="${words(globalOptions)}"
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
  if [ "$COMP_CWORD" -eq 2 ] && [ -n "$subs" ] && [[ "$cur" != -* ]]; then
    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
  elif [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
  else
    COMPREPLY=( $(compgen -f -- "$cur") )
  fi
}
complete -o filenames -F _dfs_complete dfs
`;
}

/** The completion script for `shell`. */
export function completionScript(shell: (typeof COMPLETION_SHELLS)[number], commands: readonly CompletionSpec[], globalOptions: readonly string[]): string {
  if (shell === 'bash') return bashScript(commands, globalOptions);
  return `#compdef dfs
# dfs completion for zsh: eval "$(dfs completion zsh)" (in ~/.zshrc to keep it)
autoload -U +X bashcompinit && bashcompinit
${bashScript(commands, globalOptions)}`;
}
