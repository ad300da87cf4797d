-- Alarm rate per operator-hour (ISA-18.2 alarm-system performance) between %(since)s and %(until)s,
-- with %(operators)s operator positions (only %(twins)s when not NULL): annunciated alarms per hour and operator, the busiest
-- 10 minutes, and how many 10-minute periods were floods (more than 10 alarms per operator).
WITH tens AS (
    SELECT to_timestamp(floor(extract(epoch FROM ts) / 600) * 600) AS period, count(*) AS n
    FROM alarm_annunciations
    WHERE ts >= %(since)s AND ts < %(until)s AND (%(twins)s::text[] IS NULL OR twin_id = ANY(%(twins)s::text[]))
    GROUP BY 1
)
SELECT
    coalesce((SELECT sum(n) FROM tens), 0)::bigint AS annunciated,
    extract(epoch FROM (%(until)s::timestamptz - %(since)s::timestamptz)) / 3600.0 AS hours,
    coalesce((SELECT sum(n) FROM tens), 0)
        / greatest(extract(epoch FROM (%(until)s::timestamptz - %(since)s::timestamptz)) / 3600.0, 1e-9)
        / %(operators)s AS per_operator_hour,
    coalesce((SELECT max(n) FROM tens), 0) / %(operators)s::float AS peak_10min_per_operator,
    (SELECT count(*) FROM tens WHERE n > 10 * %(operators)s) AS flood_periods
