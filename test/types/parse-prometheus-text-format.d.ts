// Types of parse-prometheus-text-format (a port of Prometheus's text parser; the package ships none).
declare module 'parse-prometheus-text-format' {
  /** One metric family as prom2json prints it. */
  export interface MetricFamily {
    name: string;
    help: string;
    type: 'GAUGE' | 'COUNTER' | 'SUMMARY' | 'HISTOGRAM' | 'UNTYPED';
    metrics: Array<{ value: string; labels?: Record<string, string>; timestamp_ms?: string }>;
  }
  /** Parses the text exposition format; throws on a line it cannot read. */
  export default function parsePrometheusTextFormat(text: string): MetricFamily[];
}
