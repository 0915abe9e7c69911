import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import PhotoPreview from '../src/components/PhotoPreview.vue'

const face = (x, y, w, h, label = 'real') => ({ box: { x, y, w, h }, label, p_fake: 0.2 })

describe('PhotoPreview', () => {
  it('draws no boxes before the server has said how big the image is', () => {
    const preview = mount(PhotoPreview, { props: { src: 'blob:x', faces: [face(1, 2, 3, 4)] } })
    expect(preview.findAll('.face-box')).toHaveLength(0)
  })

  it('places boxes in percent of the reported size, numbered from 1', () => {
    const preview = mount(PhotoPreview, {
      props: { src: 'blob:x', image: { width: 400, height: 200 }, faces: [face(100, 50, 40, 20, 'fake')], active: 0 },
    })
    const box = preview.find('.face-box')
    expect(box.element.style.left).toBe('25.000%')
    expect(box.element.style.top).toBe('25.000%')
    expect(box.element.style.width).toBe('10.000%')
    expect(box.element.style.height).toBe('10.000%')
    expect(box.classes()).toEqual(expect.arrayContaining(['is-fake', 'is-active']))
    expect(box.text()).toBe('1')
  })

  it('puts the number inside a box that touches the top edge, where it would be clipped', () => {
    const preview = mount(PhotoPreview, {
      props: { src: 'blob:x', image: { width: 100, height: 100 }, faces: [face(10, 2, 20, 20), face(50, 40, 20, 20)] },
    })
    const [top, middle] = preview.findAll('.face-box')
    expect(top.classes()).toContain('label-inside')
    expect(middle.classes()).not.toContain('label-inside')
  })

  it('tells the page when the browser cannot show the image', async () => {
    const preview = mount(PhotoPreview, { props: { src: 'blob:x' } })
    await preview.find('img').trigger('error')
    expect(preview.emitted('unavailable')).toHaveLength(1)
  })
})
