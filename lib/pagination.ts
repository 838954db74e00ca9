/** Pagination parameters and the list envelope shared by every list route (CONTRACT.md §3). */
import type { z } from 'zod';
import { intQuery } from './validation.js';

export const DEFAULT_PAGE_SIZE = 20;
export const DEFAULT_MAX_PAGE_SIZE = 100;
/** Highest page number accepted: beyond it every page is empty anyway, and offsets stay small integers. */
export const MAX_PAGE = 1_000_000;

export interface PageRequest {
  page: number;
  pageSize: number;
  /** Rows to skip: `(page - 1) * pageSize`. */
  offset: number;
}

export interface PageInfo {
  page: number;
  page_size: number;
  total: number;
  total_pages: number;
  has_next: boolean;
  has_prev: boolean;
}

export interface ListEnvelope<T> {
  code: 0;
  message: 'success';
  items: T[];
  total: number;
  pagination: PageInfo;
  timestamp: string;
}

/** zod shape members for `page` and `page_size`, to spread into a route's query schema. */
export function paginationShape(maxPageSize = DEFAULT_MAX_PAGE_SIZE) {
  return {
    page: intQuery('page', { min: 1, max: MAX_PAGE, default: 1 }),
    page_size: intQuery('page_size', { min: 1, max: maxPageSize, default: Math.min(DEFAULT_PAGE_SIZE, maxPageSize) }),
  };
}

export function toPageRequest(q: { page: number; page_size: number }): PageRequest {
  return { page: q.page, pageSize: q.page_size, offset: (q.page - 1) * q.page_size };
}

const DAY_MS = 86_400_000;
/** Years 0000-9999: the range toISOString() prints with four digits. */
const MAX_FOUR_DIGIT_YEAR_MS = 253_402_300_800_000;
const TWO_DIGITS = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));
/** `YYYY-MM-DDT` per day number, bounded: the dates of one service cluster around a few days. */
const dayPrefixes = new Map<number, string>();

/**
 * ISO 8601 UTC without milliseconds, as the seeds print times (`2026-12-01T19:47:33Z`). A page formats
 * dozens per request: the date part is made once per day, the time from integer arithmetic.
 */
export const isoSeconds = (d: Date): string => {
  const ms = d.getTime();
  if (!(ms >= 0 && ms < MAX_FOUR_DIGIT_YEAR_MS)) return d.toISOString().slice(0, -5) + 'Z'; // drops '.sssZ'; throws for an invalid Date, as before
  const day = Math.floor(ms / DAY_MS);
  let prefix = dayPrefixes.get(day);
  if (prefix === undefined) {
    prefix = new Date(day * DAY_MS).toISOString().slice(0, 11);
    if (dayPrefixes.size >= 1024) dayPrefixes.clear();
    dayPrefixes.set(day, prefix);
  }
  const seconds = Math.floor((ms - day * DAY_MS) / 1000);
  return `${prefix}${TWO_DIGITS[Math.floor(seconds / 3600)]!}:${TWO_DIGITS[Math.floor(seconds / 60) % 60]!}:${TWO_DIGITS[seconds % 60]!}Z`;
};

export function listEnvelope<T>(items: T[], total: number, page: PageRequest): ListEnvelope<T> {
  const totalPages = Math.ceil(total / page.pageSize);
  return {
    code: 0,
    message: 'success',
    items,
    total,
    pagination: {
      page: page.page,
      page_size: page.pageSize,
      total,
      total_pages: totalPages,
      has_next: page.page < totalPages,
      has_prev: page.page > 1,
    },
    timestamp: isoSeconds(new Date()),
  };
}

export type PaginationQuery = z.infer<z.ZodObject<ReturnType<typeof paginationShape>>>;
