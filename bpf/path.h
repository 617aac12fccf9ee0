/* The path of an open file (or of a directory: a task's cwd, a dirfd),
 * walked up its dentries and mounts with CO-RE, for programs that cannot
 * call bpf_d_path (tracepoints, kprobes and most fentry targets). Paths are
 * as seen from the mount namespace's root (a chroot is not applied). Include
 * after owl.h. */
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

/* The struct mount around a struct vfsmount (its member mnt), found with
 * a CO-RE offset: struct mount is private to fs/. */
static __always_inline struct mount *owl_real_mount(struct vfsmount *vfs)
{
	return (void *)vfs - bpf_core_field_offset(struct mount, mnt);
}

enum owl_up {
	OWL_UP_ROOT,	/* the walk reached the root: done */
	OWL_UP_MOUNT,	/* crossed a mount: look again */
	OWL_UP_NAME,	/* *d is a component: take its name, go on from d_parent */
};

/* One step of a walk toward the root from (*mnt, *d). At the root of a
 * mount, the walk goes on from its mount point in the parent mount; it ends
 * at the root of the namespace's first mount (its own parent) or of an
 * unmounted tree (a dentry that is its own parent). */
static __always_inline enum owl_up owl_path_up(struct mount **mntp, struct dentry **dp)
{
	/* Locals: BPF_CORE_READ of a field of the caller's own struct would
	 * relocate against that struct. */
	struct mount *mnt = *mntp, *up;
	struct dentry *d = *dp;

	if (!d)
		return OWL_UP_ROOT;
	if (d == BPF_CORE_READ(mnt, mnt.mnt_root)) {
		up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt || !up)
			return OWL_UP_ROOT;
		*dp = BPF_CORE_READ(mnt, mnt_mountpoint);
		*mntp = up;
		return OWL_UP_MOUNT;
	}
	if (d == BPF_CORE_READ(d, d_parent))
		return OWL_UP_ROOT;
	return OWL_UP_NAME;
}

/* Fills p with f's path as seen from the mount namespace's root. */
static __always_inline void owl_file_path(struct file *f, struct owl_path *p)
{
	struct mount *mnt = owl_real_mount(BPF_CORE_READ(f, f_path.mnt));
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);

	/* Each turn takes one name or crosses one mount. */
	for (int i = 0; i < 2 * OWL_PATH_DEPTH; i++) {
		switch (owl_path_up(&mnt, &d)) {
		case OWL_UP_ROOT:
			p->complete = 1;
			return;
		case OWL_UP_MOUNT:
			continue;
		default:
			break;
		}
		if (p->depth >= OWL_PATH_DEPTH)
			return;
		bpf_probe_read_kernel_str(p->names[p->depth & (OWL_PATH_DEPTH - 1)], OWL_PATH_NAME,
					  BPF_CORE_READ(d, d_name.name));
		p->depth++;
		d = BPF_CORE_READ(d, d_parent);
	}
}
