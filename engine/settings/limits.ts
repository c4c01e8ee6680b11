/**
 * Bounds shared by a setting and the code that applies it outside the configuration (no import:
 * the CLI reads it before any command loads the configuration).
 */

/**
 * The longest a task may run by its own deadline (TASK_TIMEOUT_SECONDS; restore/verify --remote's
 * `--timeout`; the restore task's default): a day. One value for the setting, the CLI and the stack.
 */
export const MAX_TASK_TIMEOUT_SECONDS = 86_400;
