//! `bare-pingora`: the smallest useful Pingora proxy, a `ProxyHttp` whose `upstream_peer` alone
//! is written, with the same allocator and runtime settings as the gateway. The benchmark
//! reports the gateway as a ratio to it, which isolates our per-request cost from the
//! framework's.

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "bare-pingora",
    about = "Bare Pingora reverse proxy for benchmarks."
)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Upstream address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    upstream: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: true,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut svc = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
    );
    svc.add_tcp(&args.listen);
    server.add_service(svc);
    server.run_forever();
}
