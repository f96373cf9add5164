/** What a bench section hands back: a markdown block for BENCHMARKS.md and the raw figures. */
export interface SectionResult {
  title: string;
  markdown: string;
  data?: unknown;
}
