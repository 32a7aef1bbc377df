import { Agent, type Task } from "@rallypoint/sdk";

const agent = new Agent("crawler-1", { capacity: 4 });

agent.capability("crawl", async (task: Task) => {
  task.progress(0.5, "fetching");
  return { url: task.payload.url, pages: 3 };
});

agent.run(); // until SIGINT/SIGTERM, then drains and leaves
