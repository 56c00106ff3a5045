//! `cgi-hello`: an ordinary WASI preview 1 program that answers HTTP in the
//! CGI convention, for `wharf serve`: the request is in the environment
//! (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `HTTP_*`) and on stdin,
//! the response (headers, blank line, body) goes to stdout.
//!
//! - `/teapot` answers with a `Status: 418` header;
//! - `/trap` panics (the server must answer 500 and keep serving);
//! - anything else echoes the method, path, query, a header and the body.

use std::io::{Read, Write};

fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let path = var("PATH_INFO");
    let mut body = String::new();
    let _ = std::io::stdin().read_to_string(&mut body);
    let mut out = std::io::stdout().lock();
    match path.as_str() {
        "/trap" => panic!("the handler was asked to trap"),
        "/teapot" => {
            let _ = write!(out, "Status: 418 I'm a teapot\r\nContent-Type: text/plain\r\n\r\nshort and stout\n");
        }
        _ => {
            let _ = write!(
                out,
                "Content-Type: text/plain\nX-Handler: cgi-hello\n\n\
                 Hello from a wharf CGI handler!\n\
                 method: {}\npath: {}\nquery: {}\nuser-agent: {}\nbody: {}\n",
                var("REQUEST_METHOD"),
                path,
                var("QUERY_STRING"),
                var("HTTP_USER_AGENT"),
                body
            );
        }
    }
}
