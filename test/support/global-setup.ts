// Runs once before the suite. Placeholder until the layer build is wired in (issue 2).
export default async function setup(): Promise<void> {}
