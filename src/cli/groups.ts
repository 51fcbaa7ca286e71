/**
 * The commands that take a subcommand (`dfs node drain n1`), and their subcommands: for help
 * texts, errors and shell completion (completion.ts). A new command group adds its line here.
 */
export const SUBCOMMANDS: Readonly<Record<string, readonly string[]>> = {
  cluster: ['init', 'up', 'down', 'add', 'use', 'list', 'rm'],
  master: ['init', 'start'],
  node: ['start', 'admit', 'drain', 'rm', 'scrub'],
  user: ['add', 'rm', 'passwd', 'disable', 'enable', 'list', 'roles', 'quota'],
  completion: ['bash', 'zsh'],
};
