// Node's fetch run through the transparent proxy by the Rust tests (`vault run`).
// Usage, from this folder: node fetch.mjs URL [METHOD]
// Prints the status on one line, then the body; exits 0 whenever a response came back
// (whatever its status) and 1, with the error and its causes on stderr, when none did.
//
// Node 20's built-in fetch ignores HTTPS_PROXY (NODE_USE_ENV_PROXY needs Node 24), so
// install undici's EnvHttpProxyAgent as the global dispatcher, which the built-in fetch
// also uses. It reads https_proxy/HTTPS_PROXY, http_proxy/HTTP_PROXY and
// no_proxy/NO_PROXY, turns the proxy URL's userinfo (http://token:vault@host:port) into
// `Proxy-Authorization: Basic ...` on the CONNECT by itself, and verifies the tunnelled
// TLS against Node's default CA store, which includes NODE_EXTRA_CA_CERTS.
import { EnvHttpProxyAgent, setGlobalDispatcher } from 'undici'

const [url, method = 'GET'] = process.argv.slice(2)
if (!url) {
  console.error('usage: node fetch.mjs URL [METHOD]')
  process.exit(2)
}

const dispatcher = new EnvHttpProxyAgent()
setGlobalDispatcher(dispatcher)

try {
  const response = await fetch(url, { method })
  const body = await response.text()
  process.stdout.write(`${response.status}\n${body}`)
} catch (error) {
  // (A 407 is always a network error to fetch, one whose message is empty.)
  const describe = (e) =>
    e instanceof Error ? `${e.name}: ${e.message || '(no message)'}${e.code ? ` (${e.code})` : ''}` : String(e)
  let message = `error: ${method} ${url} failed: ${describe(error)}`
  for (let cause = error?.cause; cause; cause = cause.cause) {
    message += `\n  caused by: ${describe(cause)}`
  }
  console.error(message)
  process.exitCode = 1
} finally {
  await dispatcher.close()
}
