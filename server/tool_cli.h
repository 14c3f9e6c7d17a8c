/*
 * tool_cli.h — `figment tool NAME 'JSON-ARGS' --app APP`: runs one tool exactly as the
 * model would (same policy, same limits, same result text) and prints the result.
 */
#ifndef FIG_TOOL_CLI_H
#define FIG_TOOL_CLI_H

/* argv excludes "figment tool". Exit status: 0 the tool succeeded, 1 the tool reported
 * an error, 2 usage or set-up error, 3 the call needs the user's confirmation. */
int tool_cli_main(int argc, char **argv);

#endif
