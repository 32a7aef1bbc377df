import { Client } from "@rallypoint/sdk";

async function main(): Promise<void> {
  const client = await Client.connect();
  console.log(await client.submit("crawl", { url: "https://example.com" }).result({ timeoutS: 60 }));
  await client.close();
}

main();
