/* sql.c — stub; being written. */
typedef int fig_sql_stub_t;
