/* The path of an open file, walked up its dentries and mounts with CO-RE,
 * for programs that cannot call bpf_d_path (tracepoints, kprobes and most
 * fentry targets). Include after owl.h. */
#pragma once

#define OWL_PATH_DEPTH 16 /* components kept; a power of two */
#define OWL_PATH_NAME 64  /* bytes per component, NUL included */

/* names[0] is the file's own name, names[depth-1] the one just below the
 * root; Go joins them (internal/event.Path). */
struct owl_path {
	__u8 names[OWL_PATH_DEPTH][OWL_PATH_NAME];
	__u32 depth;
	__u32 complete; /* 1: the walk reached the root; 0: deeper than OWL_PATH_DEPTH */
};

/* The file the current task has open as fd, or NULL. */
static __always_inline struct file *owl_fd_file(int fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), fds + fd);
	return f;
}

/* Fills p with f's path as seen from the mount namespace's root: crossing
 * a mount point goes on in the parent mount (struct mount, found from its
 * struct vfsmount member with a CO-RE offset). */
static __always_inline void owl_file_path(struct file *f, struct owl_path *p)
{
	struct vfsmount *vfs = BPF_CORE_READ(f, f_path.mnt);
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct mount *mnt = (void *)vfs - bpf_core_field_offset(struct mount, mnt);

	/* Each turn takes one name or crosses one mount. */
	for (int i = 0; i < 2 * OWL_PATH_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		if (d == BPF_CORE_READ(mnt, mnt.mnt_root)) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

			if (up == mnt || !up) {
				p->complete = 1;
				return;
			}
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			continue;
		}
		if (d == parent || !d) { /* the root of an unmounted tree */
			p->complete = 1;
			return;
		}
		if (p->depth >= OWL_PATH_DEPTH)
			return;
		bpf_probe_read_kernel_str(p->names[p->depth & (OWL_PATH_DEPTH - 1)], OWL_PATH_NAME,
					  BPF_CORE_READ(d, d_name.name));
		p->depth++;
		d = parent;
	}
}
