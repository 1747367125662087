//! `origin`: a sample HTTP origin for the local stack and the benchmarks.
//! See `e2e::origin` for what it serves.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "origin",
    about = "Sample HTTP origin: /static, /healthz, /slow?ms=N, JSON echo elsewhere."
)]
struct Args {
    /// Address to listen on; repeat for several origins in one process.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: Vec<String>,
    /// Name reported in the JSON echo (suffixed with the port).
    #[arg(long, default_value = "origin")]
    name: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut origins = Vec::new();
        for addr in &args.listen {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let port = listener.local_addr()?.port();
            origins.push(e2e::origin::Origin::serve(
                listener,
                &format!("{}-{port}", args.name),
            ));
            println!("origin listening on http://{addr}");
        }
        tokio::signal::ctrl_c().await?;
        drop(origins);
        Ok(())
    })
}
