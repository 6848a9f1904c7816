/* The database's own client as a ceiling for SQLite (libsqlite3) and MariaDB (libmariadb),
 * where pgbench serves PostgreSQL: the statement Portico generates, run in a loop on THREADS
 * threads with one connection each, every column of every row read as text.
 *
 *   own_client sqlite  FILE             simple|prepared SECONDS THREADS JOBS SQL [PARAM...]
 *   own_client mariadb SOCKET:DATABASE  simple|prepared SECONDS THREADS JOBS SQL [PARAM...]
 *
 * SQL has `?` markers; a PARAM `?` is the key of a lookup (J000001..J{JOBS} in the scattered
 * order of bench/key.lua, blank-padded to CHAR(10)), any other PARAM is bound as given.
 * `simple` writes the values into the text and has it parsed on every execution; `prepared`
 * prepares once per connection and binds the values. Prints "N/s" (executions per second).
 * Built by bench/run.sh with gcc. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql.h>
#include <sqlite3.h>

static const char *engine, *target, *mode, *sql;
static int seconds, threads, nparams;
static long jobs;
static char **params;
static atomic_long done;
static double deadline;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "own_client: %s: %s\n", what, detail);
  exit(1);
}

/* The values of execution n: the key in place of `?`. */
static void values(long n, char key[32], const char **out) {
  snprintf(key, 32, "J%06ld", (n * 7919) % jobs + 1);
  size_t len = strlen(key);
  while (len < 10) key[len++] = ' ';
  key[len] = 0;
  for (int i = 0; i < nparams; i++) out[i] = strcmp(params[i], "?") == 0 ? key : params[i];
}

/* SQL with each `?` replaced by its value as a quoted literal (the values hold no quotes). */
static void literal_sql(const char **vals, char *out, size_t size) {
  size_t o = 0;
  int p = 0;
  for (const char *s = sql; *s && o + 1 < size; s++) {
    if (*s == '?' && p < nparams) {
      o += snprintf(out + o, size - o, "'%s'", vals[p++]);
    } else {
      out[o++] = *s;
    }
  }
  out[o < size ? o : size - 1] = 0;
}

static void *sqlite_loop(void *arg) {
  long n = (long)arg * 1000003L;
  sqlite3 *db;
  if (sqlite3_open_v2(target, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
    die("sqlite3_open_v2", sqlite3_errmsg(db));
  int prepared = strcmp(mode, "prepared") == 0;
  sqlite3_stmt *stmt = NULL;
  if (prepared && sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
    die("prepare", sqlite3_errmsg(db));
  char key[32], text[4096];
  const char *vals[16];
  while (now() < deadline) {
    values(n++, key, vals);
    if (prepared) {
      sqlite3_reset(stmt);
      for (int i = 0; i < nparams; i++) sqlite3_bind_text(stmt, i + 1, vals[i], -1, SQLITE_STATIC);
    } else {
      literal_sql(vals, text, sizeof text);
      if (sqlite3_prepare_v2(db, text, -1, &stmt, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(stmt); c++) {
        const unsigned char *v = sqlite3_column_text(stmt, c);
        __asm__ volatile("" : : "r"(v) : "memory");
      }
    }
    if (rc != SQLITE_DONE) die("step", sqlite3_errmsg(db));
    if (!prepared) sqlite3_finalize(stmt);
    atomic_fetch_add(&done, 1);
  }
  if (prepared) sqlite3_finalize(stmt);
  sqlite3_close(db);
  return NULL;
}

static void *mariadb_loop(void *arg) {
  long n = (long)arg * 1000003L;
  char socket[1024];
  snprintf(socket, sizeof socket, "%s", target);
  char *database = strrchr(socket, ':');
  if (!database) die("target", "SOCKET:DATABASE");
  *database++ = 0;
  MYSQL *conn = mysql_init(NULL);
  if (!mysql_real_connect(conn, NULL, "root", "", database, 0, socket, 0))
    die("connect", mysql_error(conn));
  if (mysql_set_character_set(conn, "latin1")) die("charset", mysql_error(conn));
  int prepared = strcmp(mode, "prepared") == 0;
  MYSQL_STMT *stmt = NULL;
  MYSQL_BIND in[16], out[32];
  char cells[32][256];
  unsigned long lengths[32];
  my_bool nulls[32];
  int columns = 0;
  if (prepared) {
    stmt = mysql_stmt_init(conn);
    if (mysql_stmt_prepare(stmt, sql, strlen(sql))) die("prepare", mysql_stmt_error(stmt));
    MYSQL_RES *meta = mysql_stmt_result_metadata(stmt);
    columns = mysql_num_fields(meta);
    mysql_free_result(meta);
    if (columns > 32) die("prepare", "more than 32 columns");
    memset(out, 0, sizeof out);
    for (int c = 0; c < columns; c++) {
      out[c].buffer_type = MYSQL_TYPE_STRING;
      out[c].buffer = cells[c];
      out[c].buffer_length = sizeof cells[c];
      out[c].length = &lengths[c];
      out[c].is_null = &nulls[c];
    }
  }
  char key[32], text[4096];
  const char *vals[16];
  while (now() < deadline) {
    values(n++, key, vals);
    if (prepared) {
      memset(in, 0, sizeof in);
      for (int i = 0; i < nparams; i++) {
        in[i].buffer_type = MYSQL_TYPE_STRING;
        in[i].buffer = (void *)vals[i];
        in[i].buffer_length = strlen(vals[i]);
      }
      if (mysql_stmt_bind_param(stmt, in)) die("bind", mysql_stmt_error(stmt));
      if (mysql_stmt_execute(stmt)) die("execute", mysql_stmt_error(stmt));
      if (mysql_stmt_bind_result(stmt, out)) die("bind result", mysql_stmt_error(stmt));
      if (mysql_stmt_store_result(stmt)) die("store", mysql_stmt_error(stmt));
      int rc;
      while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
        __asm__ volatile("" : : "r"(cells) : "memory");
      }
      mysql_stmt_free_result(stmt);
    } else {
      literal_sql(vals, text, sizeof text);
      if (mysql_real_query(conn, text, strlen(text))) die("query", mysql_error(conn));
      MYSQL_RES *result = mysql_store_result(conn);
      if (!result) die("store", mysql_error(conn));
      MYSQL_ROW row;
      while ((row = mysql_fetch_row(result))) __asm__ volatile("" : : "r"(row) : "memory");
      mysql_free_result(result);
    }
    atomic_fetch_add(&done, 1);
  }
  if (stmt) mysql_stmt_close(stmt);
  mysql_close(conn);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 8) die("usage", "own_client sqlite|mariadb TARGET simple|prepared SECONDS THREADS JOBS SQL [PARAM...]");
  engine = argv[1], target = argv[2], mode = argv[3], sql = argv[7];
  seconds = atoi(argv[4]), threads = atoi(argv[5]), jobs = atol(argv[6]);
  params = argv + 8, nparams = argc - 8;
  if (nparams > 16 || threads < 1 || threads > 64 || jobs < 1) die("usage", "bad numbers");
  int maria = strcmp(engine, "mariadb") == 0;
  if (maria) mysql_library_init(0, NULL, NULL);
  pthread_t t[64];
  deadline = now() + seconds;
  for (long i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, maria ? mariadb_loop : sqlite_loop, (void *)i);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  printf("%.0f/s\n", (double)done / seconds);
  return 0;
}
