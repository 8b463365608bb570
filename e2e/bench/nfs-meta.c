/*
 * nfs-meta: the metadata half of openefs-bench. Over one libnfs context
 * (NFSv3, the same client fio's nfs engine uses), creates COUNT files of
 * SIZE bytes in a fresh directory, stats each, removes each, and prints one
 * line per phase:
 *
 *   <phase> ops=<n> seconds=<s> p50_us=<µs> p99_us=<µs>
 *
 * fio 3.33's nfs engine has no stat or unlink and times no file creation,
 * and libnfs-utils 4.0 spawns a process (and a MOUNT) per file, so neither
 * measures the server's metadata path. Built on demand by openefs-bench
 * against Debian's libnfs-dev (which e2e/scripts/fio.sh installs).
 *
 * usage: nfs-meta URL COUNT SIZE   (URL as nfs-ls takes it: the export root)
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted latencies. */
static double pct(const double *sorted, long n, double p)
{
	long rank = (long)(p / 100.0 * n + 0.999999);
	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

static void report(const char *phase, double *lat, long n, double seconds)
{
	qsort(lat, n, sizeof *lat, cmp);
	printf("%s ops=%ld seconds=%.6f p50_us=%.1f p99_us=%.1f\n", phase, n,
	       seconds, pct(lat, n, 50) * 1e6, pct(lat, n, 99) * 1e6);
	fflush(stdout);
}

static int fail(struct nfs_context *nfs, const char *what, const char *path)
{
	fprintf(stderr, "nfs-meta: %s %s: %s\n", what, path, nfs_get_error(nfs));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: nfs-meta URL COUNT SIZE\n");
		return 2;
	}
	long count = strtol(argv[2], NULL, 10);
	long size = strtol(argv[3], NULL, 10);
	if (count < 1 || size < 0 || size > (1 << 20)) {
		fprintf(stderr, "nfs-meta: COUNT must be >= 1, SIZE 0..1048576\n");
		return 2;
	}
	struct nfs_context *nfs = nfs_init_context();
	if (!nfs) {
		fprintf(stderr, "nfs-meta: out of memory\n");
		return 1;
	}
	struct nfs_url *url = nfs_parse_url_dir(nfs, argv[1]);
	if (!url)
		return fail(nfs, "parsing", argv[1]);
	if (nfs_mount(nfs, url->server, url->path) != 0)
		return fail(nfs, "mounting", argv[1]);

	char dir[64], path[128];
	snprintf(dir, sizeof dir, "/nfs-meta.%ld", (long)getpid());
	if (nfs_mkdir(nfs, dir) != 0)
		return fail(nfs, "mkdir", dir);
	char *buf = calloc(1, size ? size : 1);
	double *lat = calloc(count, sizeof *lat);
	if (!buf || !lat) {
		fprintf(stderr, "nfs-meta: out of memory\n");
		return 1;
	}
	memset(buf, 'm', size);

	double t0 = now();
	for (long i = 0; i < count; i++) {
		snprintf(path, sizeof path, "%s/f%06ld", dir, i);
		double t = now();
		struct nfsfh *fh;
		if (nfs_creat(nfs, path, 0644, &fh) != 0)
			return fail(nfs, "creat", path);
		if (size && nfs_write(nfs, fh, size, buf) != size)
			return fail(nfs, "write", path);
		if (nfs_close(nfs, fh) != 0)
			return fail(nfs, "close", path);
		lat[i] = now() - t;
	}
	report("create", lat, count, now() - t0);

	t0 = now();
	for (long i = 0; i < count; i++) {
		snprintf(path, sizeof path, "%s/f%06ld", dir, i);
		struct nfs_stat_64 st;
		double t = now();
		if (nfs_stat64(nfs, path, &st) != 0)
			return fail(nfs, "stat", path);
		lat[i] = now() - t;
		if ((long)st.nfs_size != size) {
			fprintf(stderr, "nfs-meta: %s has %llu bytes, not %ld\n", path,
				(unsigned long long)st.nfs_size, size);
			return 1;
		}
	}
	report("stat", lat, count, now() - t0);

	t0 = now();
	for (long i = 0; i < count; i++) {
		snprintf(path, sizeof path, "%s/f%06ld", dir, i);
		double t = now();
		if (nfs_unlink(nfs, path) != 0)
			return fail(nfs, "unlink", path);
		lat[i] = now() - t;
	}
	report("remove", lat, count, now() - t0);

	if (nfs_rmdir(nfs, dir) != 0)
		return fail(nfs, "rmdir", dir);
	nfs_umount(nfs);
	nfs_destroy_url(url);
	nfs_destroy_context(nfs);
	free(buf);
	free(lat);
	return 0;
}
