// Runs queries through @clickhouse/client, ClickHouse's official Node.js client, and prints what it
// returned as JSON, so that runstream's tests can check the rows.
//
// Input (stdin): {"url": "http://127.0.0.1:8123", "user", "password", "database",
//                 "queries": [{"name", "sql", "params": {...}, "stream": false}]}
// Output (stdout): {"results": [{"name", "rows", "error": {"code", "type", "message"}}]}
import { createClient } from '@clickhouse/client'

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

async function run(client, query) {
  try {
    const resultSet = await client.query({
      query: query.sql,
      format: 'JSONEachRow',
      query_params: query.params ?? {},
    })
    if (!query.stream) {
      return { name: query.name, rows: await resultSet.json() }
    }
    const rows = []
    for await (const batch of resultSet.stream()) {
      for (const row of batch) rows.push(row.json())
    }
    return { name: query.name, rows, streamed: true }
  } catch (error) {
    return {
      name: query.name,
      error: { code: error.code ?? null, type: error.type ?? null, message: String(error.message) },
    }
  }
}

const request = await readStdin()
const client = createClient({
  url: request.url,
  username: request.user,
  password: request.password,
  database: request.database,
  compression: { request: true, response: true },
  request_timeout: 60000,
})
const results = []
for (const query of request.queries) results.push(await run(client, query))
const ping = await client.ping()
await client.close()
process.stdout.write(JSON.stringify({ ping: ping.success, results }) + '\n')
