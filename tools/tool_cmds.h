/*
 * tool_cmds.h - the dattss tool's commands that live in their own files (dispatched by dattss.c's main).
 *
 * Each takes the command's own argc/argv (argv[0] is the command name), prints its results on stdout and its errors
 * on stderr, and returns the process exit status: 0 success, 1 the operation failed, 2 usage error.
 */
#ifndef DTS_TOOL_CMDS_H
#define DTS_TOOL_CMDS_H

/* dattss user add|list|rotate|remove|show|prometheus (user_cmd.c) */
int dts_tool_user(int argc, char **argv);

/* dattss send NAME VALUE (send_cmd.c) */
int dts_tool_send(int argc, char **argv);

/* dattss alert add|list|remove|history (alert_cmd.c) */
int dts_tool_alert(int argc, char **argv);

#endif /* DTS_TOOL_CMDS_H */
