fn main() -> anyhow::Result<()> {
    anyhow::bail!("oodgate-replay: not implemented yet")
}
